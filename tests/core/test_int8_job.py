"""A job with compress.quantize int8: model.int8.onnx, its measured block, and proof.

The job runs the real pipeline on the digits. The raw test arrays are read
independently (scikit-learn, as it gives them) and the int8 file is run in a fresh
Python process that imports neither torch nor this project, as a user would run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.export import ONNX_FILE, REPORT_FILE
from core.int8_stage import CALIBRATION_SAMPLES, OVER_TOLERANCE, int8_warnings
from core.onnx_export import read_onnx_metadata
from core.quantize import INT8_FILE, quantization_info
from core.result import Result
from core.spec import JobSpec

TOLERANCE = 0.02


def _spec(**compress) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"arch": "fcn"},
            "data": {"dataset": "digits"},
            "lorita": {"factor": 2},
            "train": {"epochs": 3, "seed": 0},
            "compress": {"max_accuracy_drop": TOLERANCE, **compress},
        }
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, Result]:
    from core.pipeline import run_job

    out = tmp_path_factory.mktemp("int8-job")
    return out, run_job(_spec(quantize="int8"), out, device="cpu")


# Runs in a fresh interpreter: onnxruntime and numpy only, the file and the raw arrays.
FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import onnxruntime as ort

    model, arrays = sys.argv[1], sys.argv[2]
    with np.load(arrays) as data:
        images, labels = data["x"], data["y"]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": images.astype(np.float32)})
    print(float((logits.argmax(axis=1) == labels).mean()))
    print("torch" in sys.modules, any(name.startswith("core") for name in sys.modules))
    """
)


def test_int8_block_is_present_and_consistent(job):
    out, result = job
    block = result.int8
    assert block is not None
    assert INT8_FILE in result.artifacts and (out / INT8_FILE).is_file()
    assert result.artifacts.index(INT8_FILE) == result.artifacts.index(ONNX_FILE) + 1
    one_sample = 1.0 / 360 + 1e-9  # the digits' test split has 360 images
    # onnxruntime on raw input agrees with the pipeline's PyTorch measurements.
    assert abs(block.lowrank_fp32.test_accuracy - result.accuracy.compressed) <= one_sample
    assert abs(block.dense_fp32.test_accuracy - result.accuracy.uncompressed) <= one_sample
    assert block.lowrank_int8.test_accuracy > 0.8  # a model that learned, in 8 bits
    # Sizes are those of the files; the ratios follow from them.
    assert block.lowrank_fp32.file_size_bytes == (out / ONNX_FILE).stat().st_size
    assert block.lowrank_int8.file_size_bytes == (out / INT8_FILE).stat().st_size
    assert block.lowrank_int8.file_size_bytes < block.lowrank_fp32.file_size_bytes / 2
    assert block.compression_ratio == pytest.approx(
        block.dense_fp32.file_size_bytes / block.lowrank_int8.file_size_bytes
    )
    assert block.compression_ratio > block.int8_ratio > 2
    assert block.accuracy_cost == pytest.approx(
        block.lowrank_fp32.val_accuracy - block.lowrank_int8.val_accuracy
    )
    assert block.tolerance == TOLERANCE
    assert block.within_tolerance == (block.accuracy_cost <= TOLERANCE)
    assert block.recommended == (INT8_FILE if block.within_tolerance else ONNX_FILE)
    for model in (block.dense_fp32, block.lowrank_fp32, block.lowrank_int8):
        assert model.latency_ms.batch_1 > 0 and model.latency_ms.batch_64 > 0
    assert result.timings_s.quantize is not None and result.timings_s.quantize > 0
    # report.json holds the same block.
    stored = Result.model_validate_json((out / REPORT_FILE).read_text())
    assert stored.int8 == block


def test_calibration_used_training_samples_only(job):
    out, result = job
    calibration = result.int8.calibration
    # The digits: 1437 training images, 10% held out for validation -> 1293 to draw from.
    assert calibration.split == "train"
    assert calibration.drawn_from == 1293
    assert calibration.samples == min(CALIBRATION_SAMPLES, calibration.drawn_from)
    info = quantization_info(out / INT8_FILE)
    assert info["calibration_samples"] == calibration.samples
    assert info["format"] == "QDQ" and info["weights"] == "int8 per-channel"


def test_int8_file_carries_the_input_contract(job):
    out, _ = job
    float_meta, int8_meta = read_onnx_metadata(out / ONNX_FILE), read_onnx_metadata(out / INT8_FILE)
    assert {k: v for k, v in int8_meta.items() if k != "quantization"} == float_meta
    assert json.loads(int8_meta["input_contract"])["layout"] == "NHW"


def test_fresh_process_reproduces_the_reported_int8_accuracy(job, digits_raw_test, tmp_path):
    out, result = job
    images, labels = digits_raw_test
    arrays = tmp_path / "raw_test.npz"
    np.savez(arrays, x=images, y=labels)
    completed = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(out / INT8_FILE), str(arrays)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=tmp_path,  # not the project folder: nothing of it on the path
    )
    accuracy_line, modules_line = completed.stdout.strip().splitlines()
    assert modules_line == "False False"
    assert float(accuracy_line) == pytest.approx(result.int8.lowrank_int8.test_accuracy, abs=1e-9)


def test_model_card_lists_the_int8_model(job):
    out, result = job
    card = (out / "MODEL_CARD.md").read_text()
    assert f"| `{INT8_FILE}` |" in card
    assert "## 8-bit model" in card
    assert f"{100 * result.int8.lowrank_int8.test_accuracy:.2f}%" in card


def test_cli_flag_and_table_row(job, tmp_path):
    from lorita.cli import build_parser
    from lorita.compress_command import _spec_from_args
    from lorita.report_table import format_table

    args = build_parser().parse_args(
        ["compress", "--arch", "fcn", "--dataset", "digits", "--quantize", "int8"]
    )
    assert _spec_from_args(args).compress.quantize == "int8"
    _, result = job
    table = format_table(result, tmp_path, 1.0)
    assert "low-rank int8 model.int8.onnx" in table
    assert f"recommended: {result.int8.recommended}" in table


def test_over_tolerance_keeps_float32_and_warns(job):
    _, result = job
    block = result.int8.model_copy(
        update={"accuracy_cost": 0.05, "within_tolerance": False, "recommended": ONNX_FILE}
    )
    (warning,) = int8_warnings(block)
    assert warning.kind == OVER_TOLERANCE
    assert ONNX_FILE in warning.advice
    assert int8_warnings(result.int8.model_copy(update={"within_tolerance": True})) == []
    assert int8_warnings(None) == []


def test_keep_float_needs_int8():
    with pytest.raises(ValidationError, match="keep_float"):
        _spec(keep_float="first_last")
    assert _spec(quantize="int8", keep_float="first_last").compress.keep_float == "first_last"
    assert _spec().compress.quantize == "none"


def test_uploaded_channels_last_file(tmp_path):
    """An uploaded-style .npz (uint8, channels last) is re-read in its own layout."""
    from sklearn.datasets import load_digits

    from core.pipeline import run_job

    bunch = load_digits()
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    path = tmp_path / "digits.npz"
    np.savez(
        path,
        x_train=images[:1400],
        y_train=bunch.target[:1400],
        x_test=images[1400:],
        y_test=bunch.target[1400:],
    )
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "fcn"},
            "data": {"dataset": str(path)},
            "lorita": {"factor": 2},
            "train": {"epochs": 3, "seed": 0},
            "compress": {"quantize": "int8"},
        }
    )
    result = run_job(spec, tmp_path / "out", dataset_file=path, device="cpu")
    block = result.int8
    one_sample = 1.0 / len(images[1400:]) + 1e-9
    assert result.input_contract.layout == "NHWC"
    assert abs(block.lowrank_fp32.test_accuracy - result.accuracy.compressed) <= one_sample
    assert block.calibration.drawn_from == 1400 - 140  # validation held out (10%)
