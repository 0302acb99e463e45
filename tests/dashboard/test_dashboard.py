"""The dashboard end to end in headless Chromium against the real service.

The flow a person follows: sign in, upload a dataset, get a field wrong and see
why, submit a job and watch it train live, read the result, download the
low-rank model, cancel and delete another job, compare finished jobs. Screenshots
of the pages land in test-output/screenshots/ for a person to look at.
"""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_DONE_TIMEOUT_MS = 150_000
PHONE = {"width": 390, "height": 844}


def epochs_drawn(page: Page) -> int:
    """Epoch rows the job page has drawn so far (all runs)."""
    value = page.locator("#training-section").get_attribute("data-epochs")
    return int(value or 0)


def plotted_traces(page: Page, selector: str) -> list[dict]:
    return page.evaluate(
        """(selector) => (document.querySelector(selector).data || []).map(
               (t) => ({name: t.name, points: (t.x || []).length}))""",
        selector,
    )


def shoot(page: Page, path: Path, *, full_page: bool = True) -> None:
    """Screenshot from the top, so the sticky header is not painted mid-page."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=path, full_page=full_page)


def read_safetensors_header(path: Path) -> dict:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length])


def submit_form(
    page: Page, *, dataset: str, epochs: int, baseline: bool = False, distill: bool = True
) -> str:
    """Fill the new-job form for an FCN and submit it; returns the new job's id."""
    page.goto("/jobs/new")
    page.get_by_label("Architecture").select_option("fcn")
    page.get_by_label("Dataset", exact=True).select_option(dataset)
    page.get_by_label("Epochs", exact=True).fill(str(epochs))
    if baseline:
        page.get_by_label(re.compile("baseline")).check()
    if not distill:
        page.get_by_label("Fine-tune by distillation").select_option("false")
        page.get_by_label("Search ranks after fine-tuning").select_option("true")
        page.get_by_label("Fine-tuning rates").select_option("1")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[-1]


def test_sign_in_with_a_token_and_out_again(new_context, service, screenshot_dir: Path):
    context = new_context(signed_in=False)
    page = context.new_page()
    page.goto("/datasets")
    # Not signed in: the page's first API call sends the browser to sign in, keeping the way back.
    page.wait_for_url(re.compile(r"/signin\?next=%2Fdatasets"))
    page.get_by_label("Access token").fill("lrt_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#token-error")).to_contain_text("not valid")
    expect(page.get_by_label("Access token")).to_have_attribute("aria-invalid", "true")
    shoot(page, screenshot_dir / "signin.png", full_page=False)

    page.get_by_label("Access token").fill(service.token)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/datasets$"))
    expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()
    cookies = {c["name"]: c for c in context.cookies()}
    assert any(c["httpOnly"] for c in cookies.values()), "the session cookie must be HttpOnly"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/signin$"))
    page.goto("/")
    page.wait_for_url(re.compile(r"/signin"))


def test_upload_dataset_with_progress_and_server_message(
    page: Page, digits_npz: Path, tmp_path: Path, screenshot_dir: Path
):
    page.goto("/datasets")
    expect(page.locator("#datasets-body tr")).to_have_count(5)  # the built-in sets

    # A file the server refuses: its message is shown as it came.
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"this is not a zip archive")
    page.locator("#file-input").set_input_files(broken)
    page.get_by_role("button", name="Upload").click()
    status = page.locator("#upload-status")
    expect(status).to_contain_text("Upload refused")
    expect(status).to_have_attribute("data-kind", "error")

    # Dropped onto the drop zone, as a person drags it from their file manager.
    dropped = page.evaluate_handle(
        """([name, bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name));
            return transfer;
        }""",
        [digits_npz.name, list(digits_npz.read_bytes())],
    )
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": dropped})
    expect(page.locator("#dropzone")).to_have_class(re.compile("dragging"))
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    expect(page.locator("#dropzone")).not_to_have_class(re.compile("dragging"))
    expect(page.locator("#file-chosen")).to_contain_text("digits-8x8.npz")
    page.get_by_label("Name").fill("digits-ui")
    page.get_by_role("button", name="Upload").click()
    expect(status).to_contain_text("Uploaded", timeout=30_000)
    expect(status).to_contain_text("10 classes")
    expect(status.locator("code")).to_have_text(re.compile(r"^upload:[0-9a-f-]{36}$"))
    row = page.locator("#datasets-body tr", has_text="digits-ui")
    expect(row).to_contain_text("1,437 / 360")
    expect(row).to_contain_text("1×8×8")
    shoot(page, screenshot_dir / "datasets.png")


def test_bad_fields_show_the_api_errors_next_to_them(
    page: Page, new_context, service, screenshot_dir: Path
):
    with service.client() as client:
        jobs_before = client.get("/jobs").json()["total"]
    page.goto("/jobs/new")
    # Blank fields show the architecture's recipe as their placeholder.
    expect(page.get_by_label("Learning rate")).to_have_attribute("placeholder", "0.001")
    page.get_by_label("Architecture").select_option("vgg11")
    expect(page.get_by_label("Learning rate")).to_have_attribute("placeholder", "0.05")
    page.get_by_label("Architecture").select_option("fcn")

    page.get_by_label("Learning rate").fill("-1")
    page.get_by_label("Epochs", exact=True).fill("0")
    page.get_by_role("button", name="Submit job").click()

    lr_error = page.locator("#lr-error")
    expect(lr_error).to_be_visible()
    expect(lr_error).to_contain_text("greater than 0")
    expect(page.locator("#epochs-error")).to_contain_text("greater than or equal to 1")
    expect(page.get_by_label("Learning rate")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-errors")).to_contain_text("The job was not submitted")
    # Focus goes to the first field named by the server, for keyboard and screen readers.
    focused = page.evaluate("document.activeElement.id")
    assert focused in ("epochs", "lr"), focused
    shoot(page, screenshot_dir / "new-job-validation.png")
    phone = new_context(viewport=PHONE).new_page()
    phone.goto("/jobs/new")
    expect(phone.get_by_label("Learning rate")).to_have_attribute("placeholder", "0.001")
    shoot(phone, screenshot_dir / "new-job-phone.png")

    # A percent field is checked in percent: a budget of 150% names the 100% bound.
    page.get_by_label("Learning rate").fill("")
    page.get_by_label("Epochs", exact=True).fill("")
    page.get_by_label(re.compile("Parameter budget")).check()
    page.get_by_label(re.compile("Share of parameters")).fill("150")
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#budget-error")).to_contain_text("100%")
    expect(page.locator("#lr-error")).to_be_hidden()
    assert page.url.endswith("/jobs/new")
    with service.client() as client:
        assert client.get("/jobs").json()["total"] == jobs_before


def test_job_trains_live_then_shows_results_and_downloads(
    page: Page,
    new_context,
    service,
    digits_upload: dict,
    quick_job: str,
    tmp_path: Path,
    screenshot_dir: Path,
):
    # Enough epochs that the live chart is seen part-drawn even on a fast machine.
    job_id = submit_form(page, dataset=digits_upload["reference"], epochs=6, baseline=True)
    # Uploaded datasets are shown by name, not by their upload:ID reference.
    expect(page.get_by_role("heading", level=1)).to_have_text("fcn on digits-api, N = 3")

    # Live: the curves gain points while the job runs, from the event stream.
    expect(page.locator("#live-indicator")).to_be_visible()
    deadline = time.monotonic() + JOB_DONE_TIMEOUT_MS / 1000
    seen: list[int] = []
    while time.monotonic() < deadline:
        count = epochs_drawn(page)
        if not seen or count > seen[-1]:
            seen.append(count)
            if len([n for n in seen if n > 0]) == 2:
                shoot(page, screenshot_dir / "job-detail-training.png", full_page=False)
        if not page.locator("#result").is_hidden():
            break
        page.wait_for_timeout(200)
    live_counts = [n for n in seen if n > 0]
    assert len(live_counts) >= 2, f"epochs drawn over time: {seen}"
    # 6 LoRITa + 6 baseline epochs, then the FCN default of 3 fine-tuning epochs for each
    # model at each of two rates.
    assert max(seen) == 24, f"6 LoRITa + 6 baseline + 2 x 2 x 3 fine-tune epochs, saw {seen}"
    loss_traces = plotted_traces(page, "#chart-loss")
    assert {t["name"] for t in loss_traces} >= {
        "train",
        "validation · baseline N=1",
        "validation · fine-tune at 0.1x lr",
        "validation · fine-tune at 1x lr",
        "validation · baseline N=1 fine-tune at 1x lr",
    }

    # Done: state, tables, curves, downloads.
    expect(page.locator("#job-state")).to_have_text("Succeeded", timeout=JOB_DONE_TIMEOUT_MS)
    table = page.locator("#before-after")
    for measure in ("Test accuracy", "Parameters", "FLOPs", "Latency", "File size"):
        expect(table.get_by_role("row", name=re.compile(re.escape(measure)))).to_be_visible()
    expect(page.locator("#ranks-table tbody tr")).to_have_count(4)  # the FCN's four layers
    curve_names = {t["name"] for t in plotted_traces(page, "#chart-curve")}
    assert {"LoRITa · chosen", "baseline N=1 · chosen"} <= curve_names, curve_names
    spectra = plotted_traces(page, "#chart-spectrum")
    assert len([t for t in spectra if t["points"] > 1]) == 4
    expect(page.locator("#live-indicator")).to_be_hidden()
    expect(page.locator("#cancel-button")).to_be_hidden()
    shoot(page, screenshot_dir / "job-detail.png")

    download_link = page.get_by_role("link", name=re.compile(r"^Download lowrank\.safetensors"))
    with page.expect_download() as download_info:
        download_link.click()
    download = download_info.value
    assert download.suggested_filename == "lowrank.safetensors"
    saved = tmp_path / "lowrank.safetensors"
    download.save_as(saved)
    header = read_safetensors_header(saved)
    # Truncated layers are stored as two smaller ones (name.0 / name.1).
    assert any(re.search(r"\.0\.weight$", key) for key in header), list(header)

    # Phone width: the same page, one column.
    phone = new_context(viewport=PHONE).new_page()
    phone.goto(f"/jobs/{job_id}")
    expect(phone.locator("#job-state")).to_have_text("Succeeded")
    expect(phone.locator("#result")).to_be_visible()
    phone.wait_for_timeout(500)  # let Plotly settle to the narrow width
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px at phone width"
    shoot(phone, screenshot_dir / "job-detail-phone.png")

    # The jobs list shows the finished job with its numbers.
    service.wait_for_job(quick_job, ("succeeded",), timeout_s=60)
    page.goto("/")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    expect(row.locator(".badge")).to_have_text("Succeeded")
    expect(row.locator("td[data-label='Accuracy']")).to_contain_text("%")
    expect(row.locator("td[data-label='Params']")).to_contain_text(re.compile(r"−\d+%"))
    page.get_by_label("State").select_option("succeeded")
    expect(page).to_have_url(re.compile(r"\?status=succeeded"))
    expect(page.locator("#jobs-body tr")).to_have_count(2)
    page.get_by_label("State").select_option("")
    shoot(page, screenshot_dir / "jobs-list.png")
    phone.goto("/")
    expect(phone.locator(f"tr[data-job-id='{job_id}'] .badge")).to_have_text("Succeeded")
    shoot(phone, screenshot_dir / "jobs-list-phone.png")


def test_cancel_a_running_job_then_delete_it(page: Page, service, screenshot_dir: Path):
    page.goto("/jobs/new")  # blank fields show what the architecture's recipe does
    search = page.get_by_label("Search ranks after fine-tuning")
    page.get_by_label("Architecture").select_option("resnet20")
    expect(search.locator("option").first).to_have_text("Recipe default (on)")
    expect(page.get_by_label("Fine-tune epochs after truncation")).to_have_attribute(
        "placeholder", "1"
    )
    page.get_by_label("Architecture").select_option("fcn")
    expect(search.locator("option").first).to_have_text("Recipe default (off)")
    job_id = submit_form(page, dataset="digits", epochs=500, distill=False)
    expect(page.locator("#job-state")).to_have_text("Running", timeout=60_000)
    with service.client() as client:  # the form's choices reached the job's spec
        compress = client.get(f"/jobs/{job_id}").json()["spec"]["compress"]
        assert compress["distill"] is False and compress["finetune_search"] is True
        assert compress["finetune_lr_scales"] == [1]

    # The jobs list shows it running, with its progress refreshed in place.
    listing = page.context.new_page()
    listing.goto("/")
    progress = listing.locator(f"tr[data-job-id='{job_id}'] [role=progressbar]")
    expect(listing.locator(f"tr[data-job-id='{job_id}'] .badge")).to_have_text("Running")
    first = int(progress.get_attribute("aria-valuenow"))
    expect(progress).not_to_have_attribute("aria-valuenow", str(first), timeout=30_000)
    shoot(listing, screenshot_dir / "jobs-list-running.png")
    listing.close()

    page.get_by_role("button", name="Cancel job").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Cancel this job?")
    dialog.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-state")).to_have_text("Cancelled", timeout=30_000)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()

    # Delete asks first; saying no keeps the job.
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Keep it").click()
    expect(page.locator("#job-state")).to_have_text("Cancelled")
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator(f"tr[data-job-id='{job_id}']")).to_have_count(0)
    with service.client() as client:
        assert client.get(f"/jobs/{job_id}").status_code == 404


def test_failed_job_shows_its_reason_plainly(page: Page, service, screenshot_dir: Path):
    # Valid as a spec, impossible for the data (digits have one channel): the worker fails it.
    spec = {"model": {"arch": "fcn", "in_channels": 3}, "data": {"dataset": "digits"}}
    with service.client() as client:
        job_id = client.post("/jobs", json=spec).json()["id"]
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#job-state")).to_have_text("Failed", timeout=60_000)
    reason = page.get_by_role("alert").filter(has_text="Why it failed")
    expect(reason).to_contain_text("in_channels")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.locator("#result")).to_be_hidden()
    shoot(page, screenshot_dir / "job-failed.png")
    page.goto("/?status=failed")
    expect(page.locator(f"tr[data-job-id='{job_id}'] .failure-text")).to_contain_text("in_channels")
    with service.client() as client:
        assert client.delete(f"/jobs/{job_id}").status_code == 204


def test_compare_overlays_finished_jobs(page: Page, screenshot_dir: Path):
    page.goto("/compare")
    choices = page.locator("#pick-list input[type=checkbox]")
    expect(choices).to_have_count(2)
    choices.nth(0).check()
    choices.nth(1).check()
    expect(page.locator("#compare-table tbody tr")).to_have_count(2)
    traces = plotted_traces(page, "#chart-compare")
    lines = [t for t in traces if t["points"] > 1]
    assert len(lines) >= 3, traces  # two jobs, and the first one's baseline
    expect(page).to_have_url(re.compile(r"\?ids=[^,]+,[^,]+$"))
    shoot(page, screenshot_dir / "compare.png")


def test_forms_work_with_the_keyboard_alone(page: Page):
    page.goto("/jobs/new")
    expect(page.locator("#arch option")).not_to_have_count(0)
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    # The skip link moves focus into the main area; tabbing on reaches the form in order.
    visited = []
    for _ in range(6):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert visited[:6] == ["arch", "dataset", "A", "weights", "A", "factor"], visited  # "A": links
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "focused fields must show a focus ring"
