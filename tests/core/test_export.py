"""Artifacts: safetensors + ONNX of the compressed model, and loading them back."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from core.export import ExportError, load_dense, load_lowrank, save_artifacts
from core.factorize import eligible_layers
from core.lowrank import pays_off, to_lowrank, truncate, weight_matrix
from core.measure import count_flops, count_params
from core.models import build_model

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


@pytest.fixture(scope="module")
def exported(trained_like, tmp_path_factory):
    model, ranks = trained_like
    out = tmp_path_factory.mktemp("artifacts")
    dense = truncate(model, ranks)
    lowrank = to_lowrank(model, ranks)
    sizes = save_artifacts(
        out,
        dense_model=dense,
        lowrank_model=lowrank,
        arch=ARCH,
        num_classes=CLASSES,
        in_channels=CHANNELS,
        image_size=SIZE,
        report={"params": {"compressed": count_params(lowrank)}},
    )
    return out, dense, lowrank, sizes


def test_files_and_metadata(exported, trained_like):
    out, _, lowrank, sizes = exported
    _, ranks = trained_like
    names = {"model.safetensors", "lowrank.safetensors", "lowrank.json", "model.onnx"}
    assert names | {"report.json"} <= {p.name for p in out.iterdir()}
    assert sizes["lowrank.safetensors"] < sizes["model.safetensors"]
    meta = json.loads((out / "lowrank.json").read_text())
    assert meta["arch"] == ARCH and meta["input_shape"] == list(INPUT)
    assert meta["format_version"] == 1
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
