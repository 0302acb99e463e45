"""Warm start: factorize(init="pretrained") puts LoRITa's composition exactly at a
trained model's weights, at the balanced split (the smallest sum of factor norms)."""

import pytest
import torch
from torch import nn

from core.factorize import composed_layers, factorize, merge
from core.layers import ComposedConv2d, ComposedLinear, balanced_split
from core.models import build_model

DOUBLE = torch.float64

# arch, input channels, image size, factor. The float64 SVDs of vgg11's and resnet18's
# 512-channel convs take seconds each on one core, so those two run at N=3 only.
MODEL_CASES = [
    *[
        (arch, channels, 8, factor)
        for arch, channels in [("fcn", 1), ("resnet20", 3)]
        for factor in (2, 3)
    ],
    ("simplevit", 3, 8, 2),
    ("simplevit", 3, 8, 3),
    ("vgg11", 3, 8, 3),
    ("tv:resnet18", 1, 16, 3),
]


def _pretrained(arch: str, channels: int, size: int) -> tuple[nn.Module, torch.Tensor]:
    """A float64 model in eval mode whose BatchNorm statistics moved off their init,
    and an input batch for it."""
    torch.manual_seed(0)
    model = build_model(arch, 10, channels, size).to(DOUBLE)
    x = torch.randn(4, channels, size, size, dtype=DOUBLE)
    with torch.no_grad():
        model.train()(x)
        model.train()(2 * x + 1)
    return model.eval(), x


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _schatten_sum(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """N * sum(s_i^(2/N)) of the weight as a matrix: the least sum of squared factor
    norms over all factorisations into ``factor`` maps."""
    s = torch.linalg.svdvals(weight.detach().to(DOUBLE).flatten(1))
    return factor * s.pow(2 / factor).sum()


def _factor_norm_sum(layer: nn.Module) -> torch.Tensor:
    return sum(f.detach().to(DOUBLE).square().sum() for f in layer.factors)


def _composed_type(dense: nn.Module):
    return ComposedLinear if isinstance(dense, nn.Linear) else ComposedConv2d


@pytest.mark.parametrize(("arch", "channels", "size", "factor"), MODEL_CASES)
def test_warm_start_reproduces_the_pretrained_model(arch, channels, size, factor):
    pretrained, x = _pretrained(arch, channels, size)
    warm = factorize(pretrained, factor, init="pretrained")
    names = composed_layers(warm)
    assert names, "nothing was factorized"
    with torch.no_grad():
        expected = pretrained(x)
        assert _relative_error(warm.eval()(x), expected) < 1e-6
        # Every chain order computes the same function from the split.
        for order in ("chain", "product", "hybrid"):
            for name in names:
                warm.get_submodule(name).forward_order = order
            assert _relative_error(warm(x), expected) < 1e-6, order

    for name in names:
        layer, weight = warm.get_submodule(name), pretrained.get_submodule(name).weight
        target = _schatten_sum(weight, factor)
        assert abs(_factor_norm_sum(layer) - target) / target < 1e-10, name

    merged = merge(warm)
    assert list(merged.state_dict()) == list(pretrained.state_dict())
    for key, value in pretrained.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[key], value, rtol=1e-10, atol=1e-12)
    plain = build_model(arch, 10, channels, size).to(DOUBLE)
    plain.load_state_dict(merged.state_dict(), strict=True)


def _layer_cases() -> list[tuple[str, nn.Module]]:
    torch.manual_seed(1)
    rank_two = nn.Linear(12, 5).double()
    low_conv = nn.Conv2d(4, 6, 3, bias=False).double()
    zero_linear = nn.Linear(6, 4).double()
    zero_conv = nn.Conv2d(2, 3, 3).double()
    with torch.no_grad():
        rank_two.weight.copy_(torch.randn(5, 2, dtype=DOUBLE) @ torch.randn(2, 12, dtype=DOUBLE))
        low_conv.weight.copy_(
            (torch.randn(6, 1, dtype=DOUBLE) @ torch.randn(1, 36, dtype=DOUBLE)).view(6, 4, 3, 3)
        )
        zero_linear.weight.zero_()
        zero_conv.weight.zero_()
    return [
        ("linear d_in > d_out", nn.Linear(12, 5).double()),
        ("linear d_in < d_out", nn.Linear(5, 12).double()),
        ("conv fan-in > c_out", nn.Conv2d(3, 5, 3, padding=1).double()),
        ("conv fan-in < c_out", nn.Conv2d(1, 8, 1).double()),
        ("conv strided, reflect", nn.Conv2d(2, 30, 2, 2, 1, padding_mode="reflect").double()),
        ("linear rank 2", rank_two),
        ("conv rank 1", low_conv),
        ("linear zero", zero_linear),
        ("conv zero", zero_conv),
    ]


def _input_for(dense: nn.Module) -> torch.Tensor:
    if isinstance(dense, nn.Linear):
        return torch.randn(7, dense.in_features, dtype=DOUBLE)
    return torch.randn(2, dense.in_channels, 6, 6, dtype=DOUBLE)


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize(("label", "dense"), _layer_cases(), ids=lambda v: str(v)[:24])
def test_split_is_exact_and_balanced_for_every_shape(label, dense, factor):
    layer = _composed_type(dense).from_dense(dense, factor, init="pretrained")
    weight = dense.weight.detach()
    merged = layer.merged_weight().detach()
    assert (merged - weight).norm() <= 1e-12 * max(weight.norm().item(), 1.0)
    x = _input_for(dense)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), dense(x), rtol=1e-10, atol=1e-12)
    # Balanced: every factor carries the same sum(s_i^(2/N)), N of them in all.
    per_factor = _schatten_sum(weight, factor) / factor
    for f in layer.factors:
        assert abs(f.detach().square().sum() - per_factor) <= 1e-10 * max(per_factor, 1.0)
    assert all(torch.isfinite(f).all() for f in layer.factors)


def test_every_other_exact_split_has_larger_factor_norms():
    # The balanced split is the minimum: moving an invertible A between two factors
    # (F_2 A^-1, A F_1) keeps the product and can only raise the sum of squared norms.
    torch.manual_seed(2)
    dense = nn.Linear(6, 4).double()
    layer = ComposedLinear.from_dense(dense, 3, init="pretrained")
    balanced = _factor_norm_sum(layer)
    f1, f2, f3 = (f.detach() for f in layer.factors)
    for scale in (1e-3, 1e-1, 1.0):
        a = torch.eye(6, dtype=DOUBLE) + scale * torch.randn(6, 6, dtype=DOUBLE)
        moved = [a @ f1, f2 @ torch.linalg.inv(a), f3]
        torch.testing.assert_close(moved[2] @ moved[1] @ moved[0], dense.weight.detach())
        assert sum(m.square().sum() for m in moved) > balanced


def test_null_directions_start_at_zero_and_gradient_steps_keep_them_there():
    # Documented behaviour: a zero singular value is zero in every factor, a saddle of
    # the loss, so plain gradient steps never raise the layer's rank (compression only
    # lowers it). An all-zero weight gets zero gradients and only its bias trains.
    torch.manual_seed(3)
    dense = nn.Linear(12, 5).double()
    with torch.no_grad():
        dense.weight.copy_(torch.randn(5, 2, dtype=DOUBLE) @ torch.randn(2, 12, dtype=DOUBLE))
    layer = ComposedLinear.from_dense(dense, 3, "chain", init="pretrained")
    x, y = torch.randn(64, 12, dtype=DOUBLE), torch.randn(64, 5, dtype=DOUBLE)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        (layer(x) - y).square().mean().backward()
        opt.step()
    s = torch.linalg.svdvals(layer.merged_weight().detach())
    assert not torch.allclose(layer.merged_weight().detach(), dense.weight.detach())
    assert s[1] > 1e-2 and s[2:].max() < 1e-10

    zero = nn.Linear(6, 4).double()
    nn.init.zeros_(zero.weight)
    layer = ComposedLinear.from_dense(zero, 2, init="pretrained")
    (layer(torch.randn(8, 6, dtype=DOUBLE)) - 1).square().mean().backward()
    assert all(f.grad.abs().max() == 0 for f in layer.factors)
    assert layer.bias.grad.abs().max() > 0


def test_split_is_computed_in_float64_and_stored_in_the_layer_dtype():
    torch.manual_seed(4)
    for dense in (nn.Linear(9, 4), nn.Conv2d(3, 6, 3)):
        single = _composed_type(dense).from_dense(dense, 3, init="pretrained")
        double = _composed_type(dense).from_dense(dense.double(), 3, init="pretrained")
        for f32, f64 in zip(single.factors, double.factors, strict=True):
            assert f32.dtype == torch.float32
            assert torch.equal(f32, f64.float())


def test_balanced_split_factors():
    torch.manual_seed(5)
    w = torch.randn(3, 7, dtype=DOUBLE)
    dense, square = balanced_split(w, 3, "input")
    assert dense.shape == (3, 7) and square.shape == (7, 7)
    torch.testing.assert_close(dense @ square @ square, w)
    dense, square = balanced_split(w, 3, "output")
    assert square.shape == (3, 3)
    torch.testing.assert_close(square @ square @ dense, w)
    with pytest.raises(ValueError, match="square_side"):
        balanced_split(w, 2, "left")


def test_factor_one_is_the_identity():
    pretrained, x = _pretrained("fcn", 1, 8)
    same = factorize(pretrained, 1, init="pretrained")
    assert same is not pretrained and not composed_layers(same)
    for key, value in pretrained.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    dense = nn.Conv2d(2, 3, 3).double()
    layer = ComposedConv2d.from_dense(dense, 1, init="pretrained")
    assert torch.equal(layer.factors[0], dense.weight) and torch.equal(layer.bias, dense.bias)


def test_init_is_checked_and_random_stays_the_default():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="init"):
        factorize(model, 2, init="svd")
    with pytest.raises(ValueError, match="init"):
        factorize(model, 1, init="svd")
    torch.manual_seed(6)
    fresh = factorize(model, 2)
    assert not torch.allclose(fresh[0].merged_weight(), model[0].weight)
    warm = factorize(model, 2, init="pretrained")
    torch.testing.assert_close(warm[0].merged_weight(), model[0].weight)
