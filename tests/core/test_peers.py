"""Structured pruning peer: size budgets are met, the model is really narrower, runs,
exports to ONNX, trains, and a trained model keeps its accuracy at a moderate cut."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.factorize import factorize
from core.measure import count_flops, count_params, evaluate
from core.models import build_model
from core.onnx_export import export_onnx, verify_onnx
from core.peers import PruningError, prune_to_budget
from core.peers.shortcuts import ChannelScatterShortcut, from_traceable, to_traceable
from core.train import seed_everything, train_model
from tests.core.train_recipe import plain_recipe

SHAPES = {"fcn": (1, 28, 28), "vgg11": (3, 32, 32), "resnet20": (3, 32, 32)}
# Widths change in whole channels, so a share can only be hit up to one channel step:
# the FCN (500-wide layers) and VGG11 (>= 64 channels) land within 1% of the request;
# ResNet20's 16-channel first stage makes steps of a few percent of its size.
SHARE_TOLERANCE = {"fcn": 0.01, "vgg11": 0.01, "resnet20": 0.05}


def _build(arch: str) -> nn.Module:
    seed_everything(0)
    shape = SHAPES[arch]
    return build_model(arch, 10, shape[0], shape[1]).eval()


def _state_elements(model: nn.Module) -> int:
    return sum(t.numel() for t in model.state_dict().values())


@pytest.mark.parametrize("arch", ["fcn", "vgg11", "resnet20"])
@pytest.mark.parametrize("keep", [0.3, 0.1])
def test_params_budget_is_met_by_a_narrower_model(arch, keep):
    dense = _build(arch)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    result = prune_to_budget(dense, SHAPES[arch], target="params", keep=keep)
    pruned = result.model.eval()

    assert abs(result.achieved / keep - 1) <= SHARE_TOLERANCE[arch]
    assert result.params == (count_params(dense), count_params(pruned))
    assert result.achieved == pytest.approx(result.params[1] / result.params[0])
    assert _state_elements(pruned) < _state_elements(dense) * (keep + 0.05)
    assert result.flops[1] < result.flops[0]
    # The head keeps its outputs; hidden layers got narrower.
    head = result.ignored_layers[-1]
    assert result.widths[head] == 10
    assert any(w < dict(_widths_of(dense))[n] for n, w in result.widths.items())
    x = torch.randn(5, *SHAPES[arch])
    with torch.no_grad():
        assert pruned(x).shape == dense(x).shape == (5, 10)
    # The caller's model is untouched.
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())


def _widths_of(model: nn.Module):
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            yield name, m.out_features
        elif isinstance(m, nn.Conv2d):
            yield name, m.out_channels


def test_flops_budget_and_weight_params_budget():
    dense = _build("resnet20")
    by_flops = prune_to_budget(dense, SHAPES["resnet20"], target="flops", keep=0.25)
    assert by_flops.achieved == pytest.approx(0.25, rel=SHARE_TOLERANCE["resnet20"])
    assert count_flops(by_flops.model, SHAPES["resnet20"]) == by_flops.flops[1]
    assert by_flops.flops[1] / by_flops.flops[0] == by_flops.achieved
    fcn = _build("fcn")
    by_weights = prune_to_budget(fcn, SHAPES["fcn"], target="weight_params", keep=0.2)
    assert by_weights.achieved == pytest.approx(0.2, rel=SHARE_TOLERANCE["fcn"])
    assert by_weights.weight_params[1] / by_weights.weight_params[0] == by_weights.achieved
    # Biases and norms are outside "weight_params", so the full count keeps a bit more.
    assert by_weights.params[1] / by_weights.params[0] > by_weights.achieved
    # Global pruning lets layers keep different widths and still meets the budget.
    uneven = prune_to_budget(fcn, SHAPES["fcn"], keep=0.2, global_pruning=True)
    assert uneven.achieved == pytest.approx(0.2, rel=SHARE_TOLERANCE["fcn"])
    assert len({uneven.widths[name] for name in ("layers.0", "layers.3")}) == 2


def test_residual_zero_padding_shortcut_is_rewritten_exactly():
    model = _build("resnet20")
    x = torch.randn(3, *SHAPES["resnet20"])
    with torch.no_grad():
        expected = model(x)
        to_traceable(model, x[:1])
        from_traceable(model)
        assert any(isinstance(m, ChannelScatterShortcut) for m in model.modules())
        assert torch.allclose(model(x), expected, atol=1e-6)


@pytest.mark.parametrize("arch", ["resnet20", "fcn"])
def test_pruned_model_exports_to_onnx(arch, tmp_path):
    result = prune_to_budget(_build(arch), SHAPES[arch], keep=0.3)
    path = tmp_path / "pruned.onnx"
    export_onnx(result.model, SHAPES[arch], path)
    assert verify_onnx(result.model, path, SHAPES[arch], batch=4) < 1e-3


def test_torchvision_model_is_pruned():
    dense = build_model("tv:mobilenet_v3_small", 10, 3, 32).eval()
    result = prune_to_budget(dense, (3, 32, 32), keep=0.3)
    assert result.achieved == pytest.approx(0.3, rel=0.02)
    with torch.no_grad():
        assert result.model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_trained_fcn_keeps_accuracy_at_half_the_params_and_fine_tunes(digits):
    seed_everything(0)
    model = build_model("fcn", 10, 1, 8)
    train_model(model, digits, plain_recipe(epochs=4, lr=2e-3), device="cpu")
    dense_accuracy, _ = evaluate(model, digits.test)
    assert dense_accuracy > 0.9

    result = prune_to_budget(model, (1, 8, 8), keep=0.5)
    pruned_accuracy, _ = evaluate(result.model, digits.test)
    assert result.achieved == pytest.approx(0.5, rel=0.01)
    # One-shot magnitude pruning, before any fine-tuning: on the 360 test digits (one
    # image is 0.28 points) it costs a few points.
    assert pruned_accuracy >= dense_accuracy - 0.06

    # The pruned module is an ordinary nn.Module: the training loop fine-tunes it back.
    train_model(result.model, digits, plain_recipe(epochs=1, lr=2e-3), device="cpu")
    tuned_accuracy, _ = evaluate(result.model, digits.test)
    assert tuned_accuracy >= dense_accuracy - 0.02


def test_what_cannot_be_pruned_is_reported():
    fcn = _build("fcn")
    with pytest.raises(PruningError, match="merge them first"):
        prune_to_budget(factorize(fcn, 3), SHAPES["fcn"], keep=0.5)
    with pytest.raises(PruningError, match="names no Linear/Conv"):
        prune_to_budget(fcn, SHAPES["fcn"], keep=0.5, exclude=["nothing.*"])
    with pytest.raises(PruningError, match="cannot go below"):
        # The first layer keeps its 784 inputs, so 0.05% (450 parameters) is out of reach.
        prune_to_budget(fcn, SHAPES["fcn"], keep=0.0005)
    with pytest.raises(PruningError) as caught:
        prune_to_budget(fcn, SHAPES["fcn"], target="latency")
    assert caught.value.kind == "pruning"
    # Excluded layers keep their width.
    kept = prune_to_budget(fcn, SHAPES["fcn"], keep=0.5, exclude=["layers.0"])
    assert kept.widths["layers.0"] == 500 and kept.widths["layers.3"] < 500
