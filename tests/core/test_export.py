"""Artifacts: safetensors + ONNX of the compressed model, and loading them back."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from core.export import (
    ExportError,
    load_dense,
    load_lowrank,
    read_input_contract,
    save_artifacts,
)
from core.factorize import eligible_layers
from core.lowrank import pays_off, to_lowrank, truncate, weight_matrix
from core.measure import count_flops, count_params
from core.models import build_model
from core.onnx_export import read_onnx_metadata
from core.preprocess import RawInputModel
from core.result import InputContract

ARCH, CLASSES, CHANNELS, SIZE = "resnet20", 10, 3, 16
INPUT = (CHANNELS, SIZE, SIZE)


@pytest.fixture(scope="module")
def trained_like():
    """A resnet20 with non-trivial BatchNorm statistics, and ranks that mostly pay off."""
    torch.manual_seed(0)
    model = build_model(ARCH, CLASSES, CHANNELS, SIZE)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, *INPUT))
    model.eval()
    ranks = {}
    for name in eligible_layers(model):
        m, n = weight_matrix(model.get_submodule(name)).shape
        ranks[name] = max(1, min(m, n) // 4)
    return model, ranks


def _save(out, dense, lowrank, **options):
    """save_artifacts of this file's architecture and input shape, with `options`."""
    return save_artifacts(
        out,
        dense_model=dense,
        lowrank_model=lowrank,
        arch=ARCH,
        num_classes=CLASSES,
        in_channels=CHANNELS,
        image_size=SIZE,
        **options,
    )


@pytest.fixture(scope="module")
def exported(trained_like, tmp_path_factory):
    model, ranks = trained_like
    out = tmp_path_factory.mktemp("artifacts")
    dense, lowrank = truncate(model, ranks), to_lowrank(model, ranks)
    sizes = _save(out, dense, lowrank, report={"params": {"compressed": count_params(lowrank)}})
    return out, dense, lowrank, sizes


def test_files_and_metadata(exported, trained_like):
    out, _, lowrank, sizes = exported
    _, ranks = trained_like
    names = {"model.safetensors", "lowrank.safetensors", "lowrank.json", "model.onnx"}
    assert names | {"report.json"} <= {p.name for p in out.iterdir()}
    assert sizes["lowrank.safetensors"] < sizes["model.safetensors"]
    meta = json.loads((out / "lowrank.json").read_text())
    assert meta["arch"] == ARCH and meta["input_shape"] == list(INPUT)
    assert meta["format_version"] == 2 and "input" not in meta  # no contract given
    # Exactly the layers whose rank pays off are stored as two factors.
    model, _ = trained_like
    paying = {
        name
        for name, rank in ranks.items()
        if pays_off(*weight_matrix(model.get_submodule(name)).shape, rank)
    }
    assert set(meta["structure"]) == paying and paying


def test_low_rank_onnx_and_reloads_compute_the_truncated_model(exported):
    out, dense, lowrank, _ = exported
    x = torch.randn(5, *INPUT, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = dense(x)
        assert torch.allclose(lowrank(x), expected, atol=1e-4, rtol=1e-4)
        reloaded = load_lowrank(out)  # one call, the architecture comes from lowrank.json
        assert torch.allclose(reloaded(x), expected, atol=1e-4, rtol=1e-4)
        plain = load_dense(out)
        assert torch.allclose(plain(x), expected, atol=1e-5, rtol=1e-5)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(onnx_out, expected.numpy(), atol=1e-4, rtol=1e-4)


def test_reloaded_low_rank_model_costs_what_was_saved(exported):
    out, _, lowrank, _ = exported
    reloaded = load_lowrank(out)
    assert count_params(reloaded) == count_params(lowrank)
    assert count_flops(reloaded, INPUT) == count_flops(lowrank, INPUT)
    assert count_params(reloaded) < count_params(build_model(ARCH, CLASSES, CHANNELS, SIZE))


def test_dense_weights_load_into_the_plain_architecture(exported):
    out, dense, _, _ = exported
    from safetensors.torch import load_file

    plain = build_model(ARCH, CLASSES, CHANNELS, SIZE)
    plain.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    for key, value in dense.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value)


def test_load_lowrank_into_a_user_model(exported):
    out, dense, _, _ = exported
    user_model = build_model(ARCH, CLASSES, CHANNELS, SIZE)
    reloaded = load_lowrank(out, model=user_model)
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        assert torch.allclose(reloaded(x), dense(x), atol=1e-4, rtol=1e-4)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="lowrank.json not found"):
        load_lowrank(tmp_path)


# An uploaded-style contract: uint8 pixels, channels last, as a .npz of RGB images holds them.
CONTRACT = InputContract(
    layout="NHWC",
    shape=[SIZE, SIZE, CHANNELS],
    dtype="uint8",
    value_range=[0, 255],
    divisor=255.0,
    mean=[0.49, 0.48, 0.45],
    std=[0.25, 0.24, 0.26],
    class_names=[f"class {i}" for i in range(CLASSES)],
)


@pytest.fixture(scope="module")
def exported_raw(trained_like, tmp_path_factory):
    model, ranks = trained_like
    out = tmp_path_factory.mktemp("raw")
    dense, lowrank = truncate(model, ranks), to_lowrank(model, ranks)
    model_info = {"test_accuracy": 0.5, "spec": {"model": {"arch": ARCH}}}
    _save(out, dense, lowrank, input_contract=CONTRACT, model_info=model_info)
    return out, dense


def _normalised(raw: np.ndarray) -> torch.Tensor:
    """What the data pipeline feeds the network, computed here by hand."""
    x = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CONTRACT.mean).view(1, -1, 1, 1)
    std = torch.tensor(CONTRACT.std).view(1, -1, 1, 1)
    return (x - mean) / std


def test_every_export_takes_raw_input_and_normalises_it_itself(exported_raw):
    out, dense = exported_raw
    raw = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, CHANNELS), dtype=np.uint8)
    with torch.no_grad():
        expected = dense(_normalised(raw))
        lowrank = load_lowrank(out)
        assert isinstance(lowrank, RawInputModel) and lowrank.contract == CONTRACT
        assert torch.allclose(lowrank(torch.from_numpy(raw)), expected, atol=1e-4, rtol=1e-4)
        assert torch.allclose(load_dense(out)(raw), expected, atol=1e-5, rtol=1e-5)
        bare = load_lowrank(out, preprocess=False)
        assert torch.allclose(bare(_normalised(raw)), expected, atol=1e-4, rtol=1e-4)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    (declared,) = session.get_inputs()
    assert declared.shape[1:] == [SIZE, SIZE, CHANNELS] and declared.type == "tensor(float)"
    (onnx_out,) = session.run(None, {declared.name: raw.astype(np.float32)})
    np.testing.assert_allclose(onnx_out, expected.numpy(), atol=1e-4, rtol=1e-4)
    # onnxruntime refuses uint8 (the card says to cast to float32).
    with pytest.raises(Exception, match="(?i)type"):
        session.run(None, {declared.name: raw})


def test_contract_is_stored_in_every_file(exported_raw):
    out, _ = exported_raw
    from safetensors import safe_open

    assert read_input_contract(out) == CONTRACT
    meta = read_onnx_metadata(out / "model.onnx")
    assert InputContract.model_validate_json(meta["input_contract"]) == CONTRACT
    assert json.loads(meta["input_shape"]) == ["batch", SIZE, SIZE, CHANNELS]
    assert json.loads(meta["class_names"]) == CONTRACT.class_names
    assert json.loads(meta["test_accuracy"]) == 0.5
    assert json.loads(meta["spec"]) == {"model": {"arch": ARCH}}
    assert meta["input_layout"] == "NHWC" and meta["input_dtype"] == "float32"
    for name in ("model.safetensors", "lowrank.safetensors"):
        with safe_open(str(out / name), "pt") as handle:
            header = handle.metadata()
        assert InputContract.model_validate_json(header["input_contract"]) == CONTRACT


def test_onnx_without_contract_says_it_needs_normalised_input(exported):
    out, *_ = exported
    meta = read_onnx_metadata(out / "model.onnx")
    assert meta["input_layout"] == "NCHW" and json.loads(meta["input_shape"])[1:] == list(INPUT)
    assert "input_contract" not in meta


def test_wrong_raw_shape_is_a_clear_error(exported_raw):
    out, _ = exported_raw
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 3\) in layout NHWC"):
        load_lowrank(out)(torch.zeros(1, CHANNELS, SIZE, SIZE))


def test_format_1_folders_still_load_as_bare_networks(exported, tmp_path):
    import shutil

    out, dense, *_ = exported
    for path in out.iterdir():
        shutil.copy(path, tmp_path / path.name)
    meta = json.loads((tmp_path / "lowrank.json").read_text())
    meta["format_version"] = 1
    (tmp_path / "lowrank.json").write_text(json.dumps(meta))
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        assert torch.allclose(load_dense(tmp_path)(x), dense(x), atol=1e-5)
