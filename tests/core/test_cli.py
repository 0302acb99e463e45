"""`lorita compress` end to end in a subprocess, and the CLI's error contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from core.export import load_lowrank
from core.measure import count_flops, count_params

REPO = Path(__file__).resolve().parents[2]


def _lorita(
    *args: str, timeout: float = 300, torch_free: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the CLI. `torch_free`: a folder whose `torch` package refuses to import, put
    first on the path: the command must then get by without torch."""
    # One torch thread: the model is tiny and the suite may share the CPU (see other tests).
    path = [str(torch_free)] if torch_free else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(REPO)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lorita.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> Path:
    """A folder holding a `torch` that cannot be imported (see `_lorita`)."""
    folder = tmp_path_factory.mktemp("no-torch")
    (folder / "torch").mkdir()
    (folder / "torch" / "__init__.py").write_text(
        "raise ImportError('this command must not need torch')\n"
    )
    return folder


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
    assert len(chosen) == 1
    # The curve is the rank search's, before fine-tuning; the FCN's default recipe then
    # fine-tunes the truncated model for 3 epochs, and the Result reports it after that.
    assert result["spec"]["compress"]["finetune_epochs"] == 3
    # ... at the rate better on validation of the two tried; its epochs are named by it.
    kept = result["finetune_lr_scale"]
    assert [e["run"] for e in result["finetune_history"]] == [f"finetune at {kept:g}x lr"] * 3

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
    # One epoch said as one; the FCN's three fine-tuning epochs and their teacher.
    assert "fcn on digits, N=2, 1 epoch, strategy" in done.stdout
    assert (
        "recipe: from scratch (1 epoch, adamw, lr 0.001, weight decay 0.2; fine-tuning "
        "3 epochs, distilled from the model before truncation)" in done.stdout
    )


def test_unknown_dataset_exits_with_code_2(no_torch):
    done = _lorita(
        "compress", "--arch", "fcn", "--dataset", "nope", "--epochs", "1", torch_free=no_torch
    )
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


# ---------------------------------------------------------------- output folders

TINY_RUN = (
    "compress", "--arch", "fcn", "--dataset", "digits", "--factor", "2",
    "--train-subset", "200", "--strategy", "uniform", "--keep-fraction", "0.5", "--quiet",
)  # fmt: skip


def test_default_folder_names_are_one_safe_folder():
    from lorita.run_folder import default_out_dir

    assert default_out_dir("fcn", "/path/mine.npz", 3) == Path("runs/fcn-mine-n3")
    assert default_out_dir("fcn", "~/my data/set v2.zip", 2) == Path("runs/fcn-set-v2-n2")
    assert default_out_dir("tv:resnet18", "cifar10", 1) == Path("runs/tv-resnet18-cifar10-n1")


@pytest.mark.slow
def test_reruns_say_what_they_do(tmp_path, no_torch):
    out = tmp_path / "run"
    first = _lorita(*TINY_RUN, "--epochs", "1", "--out", str(out), "--keep-checkpoints")
    assert first.returncode == 0, first.stderr
    assert (out / "checkpoints" / "lorita.pt").is_file()  # kept on request

    # The same run again: nothing is trained; it says where the result is and shows it.
    # Showing a finished run needs no torch.
    again = _lorita(*TINY_RUN, "--epochs", "1", "--out", str(out), "--json", torch_free=no_torch)
    assert again.returncode == 0, again.stderr
    assert "already finished" in again.stderr and str(out / "report.json") in again.stderr
    assert json.loads(again.stdout) == json.loads((out / "report.json").read_text())

    # Interrupted after training (no report yet): it resumes, says so, then cleans up.
    (out / "report.json").unlink()
    resumed = _lorita(*TINY_RUN, "--epochs", "1", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the unfinished run" in resumed.stderr and "epoch 1/1" in resumed.stderr
    assert (out / "report.json").is_file() and not (out / "checkpoints").exists()

    # Other settings into the same folder: refused, in flag terms, until --force.
    other = _lorita(*TINY_RUN, "--epochs", "2", "--out", str(out), torch_free=no_torch)
    assert other.returncode == 2 and other.stdout == ""
    assert "--epochs 1 -> 2" in other.stderr and "--force" in other.stderr
    forced = _lorita(*TINY_RUN, "--epochs", "2", "--out", str(out), "--json", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["spec"]["train"]["epochs"] == 2


def test_a_folder_that_is_no_run_is_not_written_into(tmp_path, no_torch):
    (tmp_path / "notes.txt").write_text("mine")
    done = _lorita(*TINY_RUN, "--epochs", "1", "--out", str(tmp_path), torch_free=no_torch)
    assert done.returncode == 2 and "holds no lorita run" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------- messages


def test_errors_use_flags_and_suggest(tmp_path, no_torch):
    # Every one of these is answered before torch is imported (a fraction of a second).
    refused = partial(_lorita, torch_free=no_torch)

    typo = refused("compress", "--arch", "fcn", "--dataset", "fashion_mnist")
    assert typo.returncode == 2
    assert "--dataset: unknown dataset 'fashion_mnist'; did you mean 'fashion-mnist'?" in (
        typo.stderr
    )
    assert ".npz / .zip file" in typo.stderr and "upload:ID" not in typo.stderr

    upload = refused("compress", "--arch", "fcn", "--dataset", "upload:123")
    assert upload.returncode == 2 and "uploaded to a lorita service" in upload.stderr

    missing = refused("compress", "--arch", "fcn", "--dataset", str(tmp_path / "mine.npz"))
    assert missing.returncode == 2 and "no such file" in missing.stderr

    drop = refused("compress", "--arch", "fcn", "--dataset", "digits", "--max-accuracy-drop", "1")
    assert drop.returncode == 2
    assert "--max-accuracy-drop: a fraction of accuracy: 0.01 means one percentage point" in (
        drop.stderr
    )
    assert "Value error" not in drop.stderr and "compress." not in drop.stderr

    budget = refused("compress", "--arch", "fcn", "--dataset", "digits", "--strategy", "budget")
    assert budget.returncode == 2 and "needs --budget" in budget.stderr

    rates = refused("compress", "--arch", "fcn", "--dataset", "digits", "--finetune-lr-scales", "0")
    assert rates.returncode == 2
    assert "--finetune-lr-scales: 0.0 is not a share of the training's learning rate" in (
        rates.stderr
    )
    assert "give rates from 0.001 to 100" in rates.stderr
    twice = ("--finetune-lr-scales", "0.1,0.1")
    repeated = refused("compress", "--arch", "fcn", "--dataset", "digits", *twice)
    assert repeated.returncode == 2 and "repeats a rate" in repeated.stderr
    words = refused("compress", "--arch", "fcn", "--dataset", "digits", "--finetune-lr-scales", "a")
    assert words.returncode == 2 and "not a comma-separated list of numbers" in words.stderr


def test_tolerance_in_points_with_a_percent_sign():
    from lorita.cli import build_parser

    parse = build_parser().parse_args
    base = ["compress", "--arch", "fcn", "--dataset", "digits"]
    assert parse([*base, "--max-accuracy-drop", "0.5%"]).max_accuracy_drop == pytest.approx(0.005)
    assert parse([*base, "--max-accuracy-drop", "0.01"]).max_accuracy_drop == 0.01


def test_fine_tuning_rates_flag_reaches_the_spec():
    from lorita.cli import build_parser
    from lorita.compress_command import _spec_from_args

    base = ["compress", "--arch", "fcn", "--dataset", "digits"]
    args = build_parser().parse_args([*base, "--finetune-lr-scales", "1, 0.3"])
    assert _spec_from_args(args).compress.finetune_lr_scales == [1.0, 0.3]
    default = _spec_from_args(build_parser().parse_args(base))
    assert default.compress.finetune_lr_scales == [0.1, 1.0]


def test_spec_paths_become_flags():
    from lorita.cli import _subparser, build_parser
    from lorita.cli_terms import CliTerms

    terms = CliTerms(_subparser(build_parser(), "compress"))
    assert terms.text("lower train.lr (now 0.1) or train.batch_size") == (
        "lower --lr (now 0.1) or --batch-size"
    )
    assert terms.text("raise compress.keep_fraction; data.val_fraction") == (
        "raise --keep-fraction; data.val_fraction"  # no flag for it: left as it is
    )
    assert terms.flags["data.dataset"] == "--dataset" and terms.flags["compress.budget"] == (
        "--budget"
    )


def test_the_search_after_fine_tuning_is_a_switch():
    from lorita.cli import build_parser
    from lorita.compress_command import _spec_from_args

    parse = build_parser().parse_args
    base = ["compress", "--arch", "resnet20", "--dataset", "digits"]
    assert _spec_from_args(parse(base)).compress.finetune_search is None  # the family's
    off = _spec_from_args(parse([*base, "--no-finetune-search"]))
    assert off.compress.finetune_search is False
    assert _spec_from_args(parse([*base, "--finetune-search"])).compress.finetune_search


def test_label_smoothing_is_a_flag(no_torch):
    from lorita.cli import build_parser
    from lorita.compress_command import _spec_from_args

    parse = build_parser().parse_args
    base = ["compress", "--arch", "fcn", "--dataset", "digits"]
    assert _spec_from_args(parse(base)).train.label_smoothing is None  # the family's
    smoothed = _spec_from_args(parse([*base, "--label-smoothing", "0.1"]))
    assert smoothed.train.label_smoothing == 0.1
    refused = _lorita(*base, "--label-smoothing", "1", torch_free=no_torch)
    assert refused.returncode == 2 and "--label-smoothing" in refused.stderr, refused.stderr
