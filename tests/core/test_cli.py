"""`lorita compress` end to end in a subprocess, and the CLI's error contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.export import load_lowrank
from core.measure import count_flops, count_params

REPO = Path(__file__).resolve().parents[2]


def _lorita(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # One torch thread: the model is tiny and the suite may share the CPU (see other tests).
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lorita.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_compress_json_on_digits(tmp_path):
    out = tmp_path / "run"
    done = _lorita(
        "compress",
        "--arch", "fcn",
        "--dataset", "digits",
        "--factor", "3",
        "--epochs", "3",
        "--json",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert "epoch 3/3" in done.stderr  # progress goes to stderr

    for key in ("accuracy", "params", "flops", "latency_ms", "file_size_bytes", "ranks"):
        assert set(result[key]) >= {"uncompressed", "compressed"} or key == "ranks"
    assert result["params"]["compressed"] < result["params"]["uncompressed"]
    assert result["factor"] == 3 and result["spec"]["model"]["in_channels"] == 1
    assert set(result["layers"]) == set(result["ranks"])
    chosen = [p for p in result["curve"] if p["test_accuracy"] is not None]
    assert len(chosen) == 1 and chosen[0]["test_accuracy"] == result["accuracy"]["compressed"]

    for name in result["artifacts"]:
        assert (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text()) == result

    model = load_lowrank(out)
    assert count_params(model) == result["params"]["compressed"]
    assert count_flops(model, (1, 8, 8)) == result["flops"]["compressed"]
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_compress_table_output(tmp_path):
    done = _lorita(
        "compress",
        "--arch", "fcn",
        "--dataset", "digits",
        "--factor", "2",
        "--epochs", "1",
        "--train-subset", "400",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "parameters" in done.stdout
    assert "file size" in done.stdout and "ranks:" in done.stdout


def test_unknown_dataset_exits_with_code_2():
    done = _lorita("compress", "--arch", "fcn", "--dataset", "nope", "--epochs", "1")
    assert done.returncode == 2
    assert "unknown dataset 'nope'" in done.stderr and done.stdout == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_user_error(tmp_path):
    done = _lorita(
        "compress", "--arch", "fcn", "--dataset", "digits", "--epochs", "1",
        "--device", "cuda", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "CUDA is not available" in done.stderr
