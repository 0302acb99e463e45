"""The dashboard's "Your models" page: upload trained weights (a wrong architecture is
refused with what does not fit), start a job from them, and read on the job page how
LoRITa compares with your model and its plain SVD truncation."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from playwright.sync_api import Page, expect
from safetensors.torch import save_file

from core.models import build_model

JOB_DONE_TIMEOUT_MS = 240_000


def _fcn_weights(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("fcn", 10, 1, 8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_upload_weights_then_compress_them(page: Page, tmp_path: Path, screenshot_dir: Path):
    weights = _fcn_weights(tmp_path / "digits-fcn.safetensors")
    page.goto("/models")
    status = page.locator("#model-status")

    page.locator("#model-file").set_input_files(weights)
    page.get_by_label("Architecture").fill("resnet20")
    page.get_by_label("Built for the data of").select_option("digits")
    page.get_by_role("button", name="Upload").click()
    expect(status).to_contain_text("Upload refused", timeout=60_000)
    expect(status).to_contain_text("missing: conv1.weight")

    page.get_by_label("Architecture").fill("fcn")
    page.get_by_label("Name").fill("my fcn")
    page.get_by_role("button", name="Upload").click()
    expect(status).to_contain_text("fits fcn", timeout=60_000)
    row = page.locator("#models-body tr", has_text="my fcn")
    expect(row).to_contain_text("10 classes, 1×8×8")
    shoot_path = screenshot_dir / "models.png"
    page.screenshot(path=shoot_path, full_page=True)

    row.get_by_role("link", name="Compress it").click()
    expect(page.get_by_label("Start from")).to_have_value(re.compile(r"^upload:"))
    expect(page.get_by_label("Architecture")).to_have_value("fcn")
    page.get_by_label("Dataset", exact=True).select_option("digits")
    page.get_by_label("Epochs", exact=True).fill("1")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))

    title = page.locator("#pretrained-title")
    expect(title).to_have_text(
        re.compile(r"^From your model \(accuracy \d+\.\d\d%\)$"), timeout=JOB_DONE_TIMEOUT_MS
    )
    rows = page.locator("#pretrained-body tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text("Plain SVD truncation")
    expect(page.locator("#pretrained-note")).to_contain_text("from pretrained")
    page.screenshot(path=screenshot_dir / "job-from-your-model.png", full_page=True)
