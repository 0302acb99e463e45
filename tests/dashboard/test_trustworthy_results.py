"""What a person takes away from a job must not mislead, read in headless Chromium.

- the tolerance field sends what it shows (percentage points -> the API's fraction);
- a model that never learned is flagged in red, with advice, and gets no "smaller" badge;
- the plain N = 1 model's accuracy, and the compressed model's cost against it, are shown;
- the comparisons side by side: each method's accuracy, and whether it was fine-tuned;
- accuracy axes have distinct tick labels that match their tick step;
- the Datasets page shows each built-in set's facts.

Two small jobs are queued when the module starts, so the worker trains them while the
first tests run. Screenshots land in test-output/screenshots/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_S = 150

# One epoch at a learning rate that cannot move the weights: the model stays at its
# random start, 10.0% test accuracy on the ten digits for this seed (chance), with a
# final training loss above ln(10).
NEAR_CHANCE_SPEC = {
    "model": {"arch": "fcn"},
    "data": {"dataset": "digits", "train_subset": 200},
    "train": {"epochs": 1, "lr": 1e-9, "seed": 1},
}
BASELINE_SPEC = {
    "model": {"arch": "fcn"},
    "data": {"dataset": "digits"},
    "train": {"epochs": 4},
    "baseline": True,
    "comparisons": ["plain", "plain+finetune", "pruning"],
}


def points(delta: float, digits: int) -> str:
    """The dashboard's signed percentage points ("−2.50 pt"), as format.js writes them."""
    value = delta * 100
    sign = "+" if value > 0.0005 else "−" if value < -0.0005 else "±"
    return f"{sign}{abs(value):.{digits}f} pt"


def percent_decimals(step_percent: float) -> int:
    for digits in range(7):
        scaled = step_percent * 10**digits
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return digits
    return 7


def y_ticks(page: Page, selector: str) -> dict:
    """The y tick labels Plotly drew, and the tick step it drew them at."""
    return page.evaluate(
        """(selector) => {
            const chart = document.querySelector(selector);
            return {
                labels: Array.from(chart.querySelectorAll(".ytick text"), (t) => t.textContent),
                dtick: Number(chart._fullLayout.yaxis.dtick),
            };
        }""",
        selector,
    )


def assert_readable_percent_ticks(ticks: dict, where: str) -> None:
    """Distinct labels, evenly spaced by exactly the tick step, with the decimals it needs."""
    labels = ticks["labels"]
    assert len(labels) >= 2, (where, ticks)
    assert len(set(labels)) == len(labels), f"{where}: repeated tick labels {labels}"
    assert all(label.endswith("%") for label in labels), (where, labels)
    values = sorted(float(label.rstrip("%").replace("\u2212", "-")) for label in labels)
    step = ticks["dtick"] * 100
    for low, high in zip(values, values[1:], strict=False):
        assert abs((high - low) - step) < 1e-6, f"{where}: labels {labels} for a step of {step}%"
    decimals = percent_decimals(step)
    for label in labels:
        shown = len(label.rstrip("%").partition(".")[2])
        assert shown == decimals, f"{where}: {label!r} for a step of {step}% ({labels})"


@pytest.fixture(scope="module")
def queued_jobs(service) -> dict[str, str]:
    with service.client() as client:
        ids = {}
        for name, spec in (("near_chance", NEAR_CHANCE_SPEC), ("baseline", BASELINE_SPEC)):
            response = client.post("/jobs", json=spec)
            assert response.status_code == 201, response.text
            ids[name] = response.json()["id"]
    return ids


def finished(service, job_id: str) -> dict:
    job = service.wait_for_job(job_id, ("succeeded", "failed", "cancelled"), JOB_TIMEOUT_S)
    assert job["status"] == "succeeded", job.get("failure_reason")
    return job


@pytest.fixture(scope="module")
def baseline_job(service, queued_jobs) -> dict:
    return finished(service, queued_jobs["baseline"])


@pytest.fixture(scope="module")
def near_chance_job(service, queued_jobs) -> dict:
    return finished(service, queued_jobs["near_chance"])


def test_tolerance_field_sends_points_as_the_api_fraction(page: Page, service, queued_jobs):
    with service.client() as client:
        jobs_before = client.get("/jobs").json()["total"]
    page.goto("/jobs/new")
    field = page.get_by_label("Allowed accuracy drop (percentage points)")
    # Blank means the spec default (0.005, half a point): the placeholder says so, in points.
    expect(field).to_have_attribute("placeholder", "0.5")
    expect(page.locator("#max-drop-hint")).to_contain_text("0.5")

    def posted_spec(action) -> dict:
        with page.expect_request(
            lambda r: r.method == "POST" and r.url.endswith("/api/v1/jobs")
        ) as request:
            action()
        return json.loads(request.value.post_data)

    # 25 points is past the API's bound (0.2): refused, and the message is in points.
    field.fill("25")
    spec = posted_spec(lambda: page.get_by_role("button", name="Submit job").click())
    assert spec["compress"]["max_accuracy_drop"] == 0.25
    error = page.locator("#max-drop-error")
    expect(error).to_contain_text("0 to 20 percentage points")
    expect(error).not_to_contain_text("0.2")
    expect(error).not_to_contain_text("fraction")

    # 1 point is sent as 0.01; only the deliberately bad epochs field is refused. The
    # peers ticked are sent as the spec's comparisons.
    field.fill("1")
    page.get_by_label("Epochs", exact=True).fill("0")
    page.get_by_label("Torch-Pruning (structured) of the plain model").check()
    page.get_by_label("SVD of the plain model truncated to LoRITa's size").check()
    spec = posted_spec(lambda: page.get_by_role("button", name="Submit job").click())
    assert spec["compress"]["max_accuracy_drop"] == 0.01
    assert spec["comparisons"] == ["plain+finetune", "pruning"] and "baseline" not in spec
    expect(page.locator("#epochs-error")).to_be_visible()
    expect(error).to_be_hidden()
    with service.client() as client:
        assert client.get("/jobs").json()["total"] == jobs_before


def test_synthetic_narrow_ranges_get_distinct_correct_ticks(page: Page):
    """Half-percent and finer steps, as a nearly flat curve needs them."""
    page.goto("/compare")
    page.wait_for_function("typeof window.Plotly !== 'undefined'")
    for values in ([0.962, 0.975, 0.981, 0.984], [0.9702, 0.9711], [0.1, 0.55, 0.98]):
        page.evaluate(
            """async (values) => {
                const { draw, percentAxis, purge } = await import("/static/js/charts.js");
                const old = document.querySelector("#tick-probe");
                if (old) {
                    purge(old);
                    old.remove();
                }
                const node = document.createElement("div");
                node.id = "tick-probe";
                node.style.cssText = "width: 640px; height: 320px";
                document.body.append(node);
                draw(node, [{ x: values.map((_, i) => i), y: values, mode: "lines" }],
                     { yaxis: percentAxis(values) });
            }""",
            values,
        )
        assert_readable_percent_ticks(y_ticks(page, "#tick-probe"), f"values {values}")


def test_job_page_shows_the_comparisons_and_how_each_was_made(
    page: Page, service, baseline_job: dict, screenshot_dir: Path
):
    result = baseline_job["result"]
    page.goto(f"/jobs/{baseline_job['id']}")
    expect(page.locator("#verdict")).to_have_text(result["verdict"]["sentence"])
    table = page.locator("#comparisons-table")
    lorita = table.locator('tr[data-method="lorita"]')
    expect(lorita).to_contain_text(f"{100 * result['accuracy']['compressed']:.2f}%")
    expect(lorita.locator("th")).to_contain_text("+ fine-tune (3 ep)")  # the FCN default
    # The plain N=1 model is compressed as LoRITa's is, fine-tuning included: its name
    # says so, as every peer's does.
    assert result["comparisons"]["plain"]["finetune_epochs"] == 3
    for method, block in result["comparisons"].items():
        row = table.locator(f'tr[data-method="{method}"]')
        expect(row).to_contain_text(f"{100 * block['accuracy']['compressed']:.2f}%")
        expect(row.locator("th")).to_contain_text(f"+ fine-tune ({block['finetune_epochs']} ep)")
    expect(table.locator("tr.best")).to_have_attribute("data-method", result["verdict"]["best"])
    # The rate each fine-tuning kept, LoRITa's and each fine-tuned peer's, of the two
    # it tried; rows that kept the same rate share one note that names them all.
    notes = page.locator("#comparison-notes li")
    for method, label in (
        ("lorita", "LoRITa N = 3"),
        ("plain+finetune", "Plain N = 1, truncated (LoRITa's size)"),
        ("pruning", "Torch-Pruning (LoRITa's size)"),
    ):
        block = result if method == "lorita" else result["comparisons"][method]
        note = notes.filter(
            has_text=f"fine-tuned at {block['finetune_lr_scale']:g}x the training's learning "
            "rate, the better on the validation split of 0.1x and 1x"
        )
        expect(note).to_have_count(1)
        expect(note).to_contain_text(label)
    page.locator("#comparisons").screenshot(path=screenshot_dir / "job-comparisons.png")

    # Starting a new job from this one asks for the same comparisons.
    page.locator("#copy-link").click()
    page.wait_for_url("**/jobs/new?from=*")
    expect(page.get_by_label("Epochs", exact=True)).to_have_value("4")
    expect(page.get_by_label("Fine-tuning rates")).to_have_value("0.1,1")
    for value in ("plain", "plain+finetune", "pruning"):
        expect(page.locator(f'input[name=comparison][value="{value}"]')).to_be_checked()


def test_job_page_and_list_show_the_plain_baseline(
    page: Page, service, baseline_job: dict, screenshot_dir: Path
):
    result = baseline_job["result"]
    plain = result["baseline"]["accuracy"]["uncompressed"]
    compressed = result["accuracy"]["compressed"]
    page.goto(f"/jobs/{baseline_job['id']}")
    expect(page.locator("#job-state")).to_have_text("Succeeded")
    kpi = page.locator(".kpi", has_text="vs plain N = 1")
    expect(kpi).to_contain_text(points(compressed - plain, 2))
    expect(kpi).to_contain_text(f"{plain * 100:.2f}%")
    note = page.locator("#baseline-note")
    expect(note).to_contain_text(f"Plain training (N = 1, same recipe) reached {plain * 100:.2f}%")
    expect(note).to_contain_text(f"{points(compressed - plain, 2)} against plain training")
    row = page.locator("#before-after").get_by_role("row", name=re.compile("Plain N = 1 model"))
    expect(row).to_contain_text(f"{plain * 100:.2f}%")

    # Both accuracy charts: distinct labels at their own step.
    expect(page.locator("#chart-curve .ytick text").first).to_be_visible()
    for chart in ("#chart-curve", "#chart-accuracy"):
        assert_readable_percent_ticks(y_ticks(page, chart), chart)
    page.wait_for_timeout(300)  # let Plotly settle before the pictures
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshot_dir / "job-detail-baseline.png", full_page=True)
    curve_card = page.locator("section", has=page.locator("#chart-curve"))
    curve_card.screenshot(path=screenshot_dir / "job-accuracy-chart.png")

    page.goto("/")
    listed = page.locator(f"tr[data-job-id='{baseline_job['id']}'] .baseline-delta")
    expect(listed).to_have_text(f"{points(compressed - plain, 1)} vs N = 1")


def test_compare_page_ticks_are_distinct(page: Page, baseline_job: dict, near_chance_job: dict):
    page.goto(f"/compare?ids={baseline_job['id']},{near_chance_job['id']}")
    expect(page.locator("#compare-table tbody tr")).to_have_count(2)
    expect(page.locator("#chart-compare .ytick text").first).to_be_visible()
    assert_readable_percent_ticks(y_ticks(page, "#chart-compare"), "#chart-compare")


def test_a_model_that_did_not_learn_is_flagged_not_a_win(
    page: Page, near_chance_job: dict, screenshot_dir: Path
):
    result = near_chance_job["result"]
    assert result["accuracy"]["uncompressed"] <= 0.15, result["accuracy"]  # chance is 0.10
    warnings = result.get("warnings")
    if not warnings:
        pytest.xfail("the engine does not add result warnings (did_not_learn) yet")
    blocking = next(w for w in warnings if w["kind"] == "did_not_learn")

    page.goto("/")
    row = page.locator(f"tr[data-job-id='{near_chance_job['id']}']")
    expect(row).to_have_class(re.compile("did-not-learn"))
    expect(row.locator(".warn-badge")).to_have_text("Did not learn")
    expect(row.locator("td[data-label='Accuracy'] .bad")).to_be_visible()
    # The size change is shown, but never as a green saving.
    expect(row.locator("td[data-label='Params']")).to_contain_text(re.compile(r"−\d+%"))
    expect(row.locator(".good")).to_have_count(0)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshot_dir / "jobs-list-near-chance.png", full_page=False)

    page.goto(f"/jobs/{near_chance_job['id']}")
    banner = page.locator("#result-warnings .result-warning.blocking")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("The model did not learn")
    expect(banner).to_contain_text(blocking["message"])
    if blocking.get("advice"):
        expect(banner).to_contain_text(blocking["advice"])
    kpis = page.locator("#kpis")
    expect(kpis).to_contain_text("not a win")
    expect(kpis).not_to_contain_text("× smaller")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshot_dir / "job-near-chance.png", full_page=False)


def test_datasets_page_shows_the_built_in_facts(page: Page, service, screenshot_dir: Path):
    with service.client() as client:
        listed = {d["reference"]: d for d in client.get("/datasets").json()}
    digits = listed["digits"]
    if not (digits.get("info") or {}).get("num_classes"):
        pytest.xfail("the datasets API does not list the built-in sets' facts yet")
    page.goto("/datasets")
    row = page.locator("#datasets-body tr[data-reference='digits']")
    expect(row.locator("td[data-label='Classes']")).to_have_text("10")
    expect(row.locator("td[data-label='Input']")).to_have_text("1×8×8")
    expect(row.locator("td[data-label='Train / test']")).to_have_text("1,437 / 360")
    # Each built-in says whether this server has it, and where a job would get it.
    for name, dataset in listed.items():
        if not dataset.get("builtin") or not isinstance(dataset.get("present"), bool):
            continue
        kind = page.locator(f"#datasets-body tr[data-reference='{name}'] td[data-label='Kind']")
        if dataset["present"]:
            expect(kind).to_contain_text("on this server")
            expect(kind).not_to_contain_text("not on this server")
        else:
            expect(kind).to_contain_text("not on this server yet; the first job fetches it")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshot_dir / "datasets-built-in.png", full_page=True)
