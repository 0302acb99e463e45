"""Exported models take the data as the user has it and reproduce the report's accuracy.

Each job runs the real pipeline; the raw test arrays are read independently of the
pipeline (from the .npz file, from scikit-learn, from the IDX files), then fed to
model.onnx (onnxruntime), load_lowrank and load_dense without any preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from core.export import (
    ARTIFACTS,
    MODEL_CARD_FILE,
    load_dense,
    load_lowrank,
    read_input_contract,
)
from core.onnx_export import read_onnx_metadata
from core.paths import default_data_dir
from core.pipeline import run_job
from core.result import InputContract, Result
from core.spec import JobSpec


def _job(dataset: str, out: Path, **data) -> Result:
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "fcn"},
            "data": {"dataset": dataset, **data},
            "lorita": {"factor": 2},
            "train": {"epochs": 3, "seed": 0},
        }
    )
    return run_job(spec, out, device="cpu")


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_NAMES = [str(d) for d in range(10)]


def _digits_npz(path: Path, *, uint8: bool) -> tuple[np.ndarray, np.ndarray]:
    """An uploaded-style .npz of the digits; returns its raw (x_test, y_test)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    images, labels = bunch.images[order], bunch.target[order]
    if uint8:  # pixels 0..255, (N, H, W)
        images = np.clip(images * 16, 0, 255).astype(np.uint8)
    else:  # float 0..16, channels last (N, H, W, 1)
        images = images[..., None].astype(np.float32)
    names = {"class_names": np.array(NAMES)} if uint8 else {}
    np.savez(
        path,
        **names,
        x_train=images[:1400],
        y_train=labels[:1400],
        x_test=images[1400:],
        y_test=labels[1400:],
    )
    with np.load(path) as saved:  # the arrays exactly as in the file
        return saved["x_test"], saved["y_test"]


def _onnx_accuracy(folder: Path, x: np.ndarray, y: np.ndarray) -> float:
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    (logits,) = session.run(None, {name: x.astype(np.float32)})
    return float((logits.argmax(axis=1) == y).mean())


def _torch_accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.ascontiguousarray(x))).argmax(dim=1).numpy()
    return float((predicted == y).mean())


def _assert_reproduces(folder: Path, result: Result, x: np.ndarray, y: np.ndarray) -> dict:
    """Every exported model on the raw arrays: within one test sample of the report."""
    report = result.accuracy.compressed
    one_sample = 1.0 / len(y) + 1e-9
    measured = {
        "onnx": _onnx_accuracy(folder, x, y),
        "load_lowrank": _torch_accuracy(load_lowrank(folder), x, y),
        "load_dense": _torch_accuracy(load_dense(folder), x, y),
    }
    for name, accuracy in measured.items():
        assert abs(accuracy - report) <= one_sample, (name, accuracy, report)
    # The report must be worth reproducing: a model that learned, not chance.
    assert report > 0.5
    print(f"{folder.name}: raw {measured}, report {report} ({len(y)} test images)")
    return measured


def _check_metadata(
    folder: Path, result: Result, x: np.ndarray, class_names: list[str] | None
) -> InputContract:
    meta = read_onnx_metadata(folder / "model.onnx")
    contract = InputContract.model_validate_json(meta["input_contract"])
    assert contract == read_input_contract(folder) == result.input_contract
    assert meta["input_name"] == "input" and meta["input_dtype"] == "float32"
    assert json.loads(meta["input_shape"]) == ["batch", *x.shape[1:]]
    assert meta["input_layout"] == contract.layout
    assert json.loads(meta.get("class_names", "null")) == class_names == contract.class_names
    assert json.loads(meta["test_accuracy"]) == result.accuracy.compressed
    assert json.loads(meta["spec"]) == result.spec
    assert meta["format_version"] == "2"
    low, high = json.loads(meta["input_value_range"])
    assert [low, high] == contract.value_range and low < high
    preprocessing = json.loads(meta["preprocessing"])
    assert preprocessing["mean"] == contract.mean and preprocessing["std"] == contract.std
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    (declared,) = session.get_inputs()
    assert declared.type == "tensor(float)" and list(declared.shape[1:]) == list(x.shape[1:])
    return contract


@pytest.fixture(scope="module")
def uint8_npz_job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uint8")
    x, y = _digits_npz(folder / "digits-uint8.npz", uint8=True)
    out = folder / "out"
    return out, _job(str(folder / "digits-uint8.npz"), out), x, y


def test_uint8_npz_raw_pixels_reproduce_the_report(uint8_npz_job):
    out, result, x, y = uint8_npz_job
    assert x.dtype == np.uint8 and x.shape[1:] == (8, 8) and x.max() > 16
    _assert_reproduces(out, result, x, y)
    contract = _check_metadata(out, result, x, NAMES)
    assert (contract.layout, contract.dtype, contract.divisor) == ("NHW", "uint8", 255.0)


def test_torch_models_take_uint8_tensors_and_channel_axis(uint8_npz_job):
    out, result, x, y = uint8_npz_job
    model = load_lowrank(out)
    with torch.no_grad():
        flat = model(torch.from_numpy(x))
        with_channel = model(torch.from_numpy(x[:, None]))
        as_numpy = model(x)
    assert torch.equal(flat, with_channel) and torch.equal(flat, as_numpy)
    with pytest.raises(ValueError, match=r"expected raw input of shape \(N, 8, 8\)"):
        model(torch.zeros(2, 64))


def test_bare_network_takes_normalised_tensors(uint8_npz_job):
    out, _, x, _ = uint8_npz_job
    contract = read_input_contract(out)
    bare = load_lowrank(out, preprocess=False)
    normalised = (torch.from_numpy(x).float()[:, None] / 255.0 - contract.mean[0]) / (
        contract.std[0]
    )
    with torch.no_grad():
        assert torch.allclose(bare(normalised), load_lowrank(out)(x), atol=1e-5)


def test_float_npz_channels_last_reproduces_the_report(tmp_path):
    x, y = _digits_npz(tmp_path / "digits-float.npz", uint8=False)
    out = tmp_path / "out"
    result = _job(str(tmp_path / "digits-float.npz"), out)
    assert x.dtype == np.float32 and x.shape[1:] == (8, 8, 1) and x.max() == 16
    _assert_reproduces(out, result, x, y)
    contract = _check_metadata(out, result, x, None)
    assert (contract.layout, contract.divisor, contract.value_range) == ("NHWC", 1.0, [0, 16])


def test_builtin_digits_as_scikit_learn_gives_them(digits_raw_test, tmp_path):
    x, y = digits_raw_test
    result = _job("digits", tmp_path)
    _assert_reproduces(tmp_path, result, x, y)
    contract = _check_metadata(tmp_path, result, x, DIGIT_NAMES)
    assert (contract.layout, contract.dtype, contract.divisor) == ("NHW", "float64", 16.0)
    assert contract.value_range == [0.0, 16.0]


def test_model_card_and_artifact_list(tmp_path):
    result = _job("digits", tmp_path, train_subset=300)
    assert set(result.artifacts) == set(ARTIFACTS) and MODEL_CARD_FILE in result.artifacts
    assert {p.name for p in tmp_path.iterdir()} >= set(ARTIFACTS)
    card = (tmp_path / MODEL_CARD_FILE).read_text()
    for name in ARTIFACTS:
        assert f"`{name}`" in card
    assert f"{100 * result.accuracy.compressed:.2f}%" in card
    assert f"{100 * result.val_accuracy.uncompressed:.2f}%" in card
    assert "lorita.load_lowrank" in card and "onnxruntime" in card
    assert "(batch, 8, 8)" in card and "layout NHW" in card
    assert "astype(np.float32)" in card
    # How the compressed model was fine-tuned (the FCN default: 3 epochs, distilled).
    assert result.spec["compress"]["finetune_epochs"] == 3
    assert "fine-tuned for 3 epochs, distilled from the model before truncation" in card


IDX_SETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _idx_present(name: str) -> bool:
    from core.data.folders import idx_dataset_present

    return idx_dataset_present(name, default_data_dir())


@pytest.mark.parametrize("name", list(IDX_SETS))
def test_builtin_idx_sets_take_uint8_pixels_as_stored(name, tmp_path):
    """MNIST / Fashion-MNIST: the test images exactly as the IDX file holds them."""
    from core.data.folders import FASHION_CLASSES, find_idx_file, idx_raw_dir
    from core.data.idx import read_idx

    if not _idx_present(name):
        pytest.skip(f"{name} is not in {default_data_dir()} (`lorita data fetch {name}`)")
    raw_dir = idx_raw_dir(name, default_data_dir())
    x = read_idx(find_idx_file(raw_dir, "t10k-images-idx3-ubyte"), expected_ndim=3)
    y = read_idx(find_idx_file(raw_dir, "t10k-labels-idx1-ubyte"), expected_ndim=1)
    result = _job(name, tmp_path, train_subset=3000)
    assert x.dtype == np.uint8 and x.shape == (10_000, 28, 28)
    _assert_reproduces(tmp_path, result, x, y.astype(np.int64))
    names = list(FASHION_CLASSES) if name == "fashion-mnist" else DIGIT_NAMES
    contract = _check_metadata(tmp_path, result, x, names)
    assert (contract.layout, contract.dtype, contract.divisor) == ("NHW", "uint8", 255.0)
