"""Composed layers: both forward orders agree, init statistics, dense round trips."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.layers import (
    ACTIVATION_MAC_WEIGHT,
    ComposedConv2d,
    ComposedLayer,
    ComposedLinear,
    _pointwise_as_matmul,
    cheapest_order,
    order_extra_costs,
)

DOUBLE = torch.float64


def _grads(layer: nn.Module, x: torch.Tensor, order: str):
    layer.forward_order = order
    x = x.clone().requires_grad_(True)
    out = layer(x)
    # A fixed random projection makes every output element matter to the gradient.
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    params = list(layer.parameters())
    grads = torch.autograd.grad((out * weights).sum(), [x, *params])
    return out.detach(), grads


def _assert_orders_agree(layer: nn.Module, x: torch.Tensor) -> None:
    out_chain, grads_chain = _grads(layer, x, "chain")
    for order in ("product", "hybrid", "auto"):
        out, grads = _grads(layer, x, order)
        torch.testing.assert_close(out, out_chain, rtol=1e-10, atol=1e-10)
        for grad, grad_chain in zip(grads, grads_chain, strict=True):
            torch.testing.assert_close(grad, grad_chain, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize(("d_in", "d_out", "bias"), [(12, 5, True), (5, 12, False)])
def test_linear_orders_give_same_outputs_and_gradients(factor, d_in, d_out, bias):
    torch.manual_seed(factor)
    layer = ComposedLinear(d_in, d_out, factor, bias=bias, dtype=DOUBLE)
    _assert_orders_agree(layer, torch.randn(3, 4, d_in, dtype=DOUBLE))


CONV_CASES = [
    {"kernel_size": 3, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": (2, 0), "dilation": (2, 1)},
    {"kernel_size": 3, "padding": "same", "dilation": 2},
    {"kernel_size": 3, "padding": "valid"},
    {"kernel_size": 3, "padding": 2, "padding_mode": "reflect"},
    {"kernel_size": 1},
]


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("options", CONV_CASES, ids=str)
def test_conv_orders_give_same_outputs_and_gradients(factor, options):
    torch.manual_seed(factor)
    layer = ComposedConv2d(3, 5, factor=factor, dtype=DOUBLE, **options)
    _assert_orders_agree(layer, torch.randn(2, 3, 9, 8, dtype=DOUBLE))
    # Matches the plain convolution with the merged weight.
    dense = layer.to_dense()
    x = torch.randn(2, 3, 9, 8, dtype=DOUBLE)
    torch.testing.assert_close(layer(x), dense(x))


@pytest.mark.parametrize("options", CONV_CASES, ids=str)
def test_conv_output_positions_match_real_output(options):
    layer = ComposedConv2d(3, 4, factor=2, **options)
    for shape in [(2, 3, 9, 8), (3, 11, 7)]:
        x = torch.randn(shape)
        out = layer(x)
        expected = out.shape[-1] * out.shape[-2] * (out.shape[0] if out.dim() == 4 else 1)
        assert layer.output_positions(x) == expected


def test_cheapest_order_compares_multiply_adds():
    # conv 512 -> 512, 3x3 (fan-in 4608), N=3, in units of 512**2 multiply-adds, with
    # w = ACTIVATION_MAC_WEIGHT = 1.5: chain 2wP, product 512 + 4608, hybrid 512 + wP.
    assert cheapest_order(3, 128, 512, 4608) == "chain"  # 384 < 704
    assert cheapest_order(3, 2048, 512, 4608) == "hybrid"  # 3584 < 5120, 6144
    assert cheapest_order(3, 8192, 512, 4608) == "product"  # 5120 < 12800
    # N=2: the product iff fan-in < w * P (a tie goes to the chain).
    tie = 4608 / ACTIVATION_MAC_WEIGHT
    assert cheapest_order(2, int(tie), 512, 4608) == "chain"
    assert cheapest_order(2, int(tie) + 1, 512, 4608) == "product"


@pytest.mark.parametrize(
    "layer, x",
    [
        (ComposedLinear(64, 10, factor=3), torch.randn(32, 64)),
        (ComposedLinear(16, 48, factor=4), torch.randn(5, 16)),
        (ComposedConv2d(8, 24, 3, padding=1, factor=3), torch.randn(2, 8, 6, 6)),
        (ComposedConv2d(24, 8, 3, stride=2, factor=2), torch.randn(2, 24, 9, 9)),
    ],
    ids=["linear-n3", "linear-n4", "conv-n3", "conv-n2"],
)
def test_order_extra_costs_are_the_multiply_adds_torch_counts(layer, x):
    """The price list the orders are chosen by is what each order really computes:
    torch's FLOP counter, less the dense map, halved (a multiply-add is two FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    positions, (square, other) = layer.output_positions(x), layer.order_sizes
    extra = order_extra_costs(layer.factor, positions, square, other)
    orders = {"chain", "product", "hybrid"} if layer.factor > 2 else {"chain", "product"}
    assert set(extra) == orders
    for order, expected in extra.items():
        layer.forward_order = order
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            layer(x)
        assert counter.get_total_flops() / 2 - positions * square * other == expected, order


def test_work_on_activations_counts_more_than_merging_weights():
    # VGG16 at batch 32 (timed on a CPU, training steps): at 4x4 pixels and 512
    # channels chain and hybrid need the same multiply-adds, and the hybrid, which
    # touches the activations once, is as fast or faster; at 8x8 and 256 channels the
    # product (all extra work on weights) beats the hybrid although it needs ~11% more.
    assert ACTIVATION_MAC_WEIGHT > 1.125
    assert cheapest_order(3, 32 * 4 * 4, 512, 4608) == "hybrid"
    assert cheapest_order(3, 32 * 8 * 8, 256, 2304) == "product"
    assert cheapest_order(3, 32 * 2 * 2, 512, 4608) == "chain"


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_as_matmul_is_the_1x1_convolution(bias, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6, dtype=DOUBLE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, 1, 1, dtype=DOUBLE, requires_grad=True)
    b = torch.randn(7, dtype=DOUBLE, requires_grad=True) if bias else None
    x.requires_grad_(True)
    out = _pointwise_as_matmul(x, weight, b)
    expected = F.conv2d(x, weight, b)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout)
    probe = torch.randn(expected.shape, dtype=DOUBLE)
    inputs = [x, weight] + ([b] if bias else [])
    grads = torch.autograd.grad((out * probe).sum(), inputs)
    grads_conv = torch.autograd.grad((expected * probe).sum(), inputs)
    for grad, grad_conv in zip(grads, grads_conv, strict=True):
        torch.testing.assert_close(grad, grad_conv, rtol=1e-12, atol=1e-12)


def test_a_training_step_merges_the_weights_once(monkeypatch):
    # The product order forms the merged weight once per forward; the backward reuses
    # what autograd saved instead of multiplying the factors again.
    calls = []
    original = ComposedLayer._product

    def counting(self, indices):
        calls.append(self.forward_order)
        return original(self, indices)

    monkeypatch.setattr(ComposedLayer, "_product", counting)
    for order, merges in (("product", 1), ("hybrid", 1), ("chain", 0)):
        calls.clear()
        layer = ComposedConv2d(4, 6, 3, padding=1, factor=3, forward_order=order)
        layer(torch.randn(2, 4, 5, 5)).sum().backward()
        assert len(calls) == merges, order
        assert all(p.grad is not None for p in layer.parameters())


def test_auto_picks_the_cheaper_order():
    conv = ComposedConv2d(64, 64, 3, padding=1, factor=3)
    # fan-in 576: big images make the product cheaper, tiny ones the chain.
    assert conv.chosen_order(torch.empty(8, 64, 32, 32)) == "product"
    assert conv.chosen_order(torch.empty(1, 64, 4, 4)) == "chain"
    assert conv.chosen_order(torch.empty(1, 64, 16, 16)) == "hybrid"
    linear = ComposedLinear(256, 10, factor=2)
    assert linear.uses_product(torch.empty(64, 256))  # 64 rows > d_out = 10
    assert not linear.uses_product(torch.empty(4, 256))
    for order in ("chain", "product", "hybrid"):
        conv.forward_order = order
        assert conv.chosen_order(torch.empty(1, 64, 4, 4)) == order


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_init_matches_plain_layer_statistics(factor):
    torch.manual_seed(0)
    x_lin = torch.randn(512, 256)
    x_conv = torch.randn(8, 64, 12, 12)
    pairs = [
        (ComposedLinear(256, 128, factor), nn.Linear(256, 128), x_lin),
        (ComposedLinear(128, 256, factor), nn.Linear(128, 256), x_lin[:, :128]),
        (ComposedConv2d(64, 96, 3, padding=1, factor=factor), nn.Conv2d(64, 96, 3, 1, 1), x_conv),
    ]
    for composed, plain, x in pairs:
        with torch.no_grad():
            w_ratio = composed.merged_weight().std() / plain.weight.std()
            var_ratio = composed(x).var() / plain(x).var()
        assert 0.8 < w_ratio < 1.2, (type(plain).__name__, factor, w_ratio)
        assert 0.7 < var_ratio < 1.3, (type(plain).__name__, factor, var_ratio)
        assert composed.bias.abs().max() <= plain.bias.abs().max() * 1.1 + 1e-3


def test_default_init_of_a_product_would_shrink():
    # Why the init is scaled: N default-initialised factors shrink the product.
    torch.manual_seed(0)
    factors = [nn.Linear(256, 256).weight for _ in range(3)]
    product = factors[2] @ factors[1] @ factors[0]
    assert product.std() < 0.5 * nn.Linear(256, 256).weight.std()


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_from_dense_pretrained_reproduces_dense_layer(factor):
    torch.manual_seed(1)
    linear = nn.Linear(7, 4).double()
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=1, padding_mode="circular").double()
    for dense, x in [(linear, torch.randn(5, 7)), (conv, torch.randn(2, 3, 8, 8))]:
        x = x.double()
        composed = type_for(dense).from_dense(dense, factor, init="pretrained")
        assert composed.factor == factor
        torch.testing.assert_close(composed(x), dense(x))
        torch.testing.assert_close(composed.to_dense()(x), dense(x))
        fresh = type_for(dense).from_dense(dense, factor)
        assert not torch.allclose(fresh.merged_weight(), dense.weight)
        assert fresh.merged_weight().shape == dense.weight.shape


def type_for(dense: nn.Module):
    return ComposedLinear if isinstance(dense, nn.Linear) else ComposedConv2d


def test_to_dense_keeps_device_dtype_mode_and_bias():
    layer = ComposedConv2d(2, 3, 3, factor=3, bias=True, dtype=DOUBLE).eval()
    dense = layer.to_dense()
    assert isinstance(dense, nn.Conv2d) and type(dense) is nn.Conv2d
    assert dense.weight.dtype == DOUBLE and not dense.training
    torch.testing.assert_close(dense.bias, layer.bias.detach())
    linear = ComposedLinear(4, 3, factor=2, bias=False).to_dense()
    assert type(linear) is nn.Linear and linear.bias is None


def test_factors_are_plain_parameters_for_weight_decay():
    layer = ComposedConv2d(3, 8, 3, factor=3)
    names = [name for name, _ in layer.named_parameters()]
    assert sorted(names) == ["bias", "factors.0", "factors.1", "factors.2"]
    assert layer.factors[0].shape == (8, 3, 3, 3)
    assert layer.factors[1].shape == (8, 8, 1, 1)
    linear = ComposedLinear(5, 2, factor=3)
    assert [tuple(p.shape) for p in linear.factors] == [(5, 5), (5, 5), (2, 5)]


def test_weight_property_is_the_merged_weight():
    layer = ComposedLinear(6, 3, factor=3, dtype=DOUBLE)
    x = torch.randn(4, 6, dtype=DOUBLE)
    torch.testing.assert_close(F.linear(x, layer.weight, layer.bias), layer(x))


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="groups"):
        ComposedConv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="factor"):
        ComposedLinear(4, 4, factor=0)
    with pytest.raises(ValueError, match="forward_order"):
        ComposedLinear(4, 4, factor=2, forward_order="fast")
    with pytest.raises(ValueError, match="init"):
        ComposedLinear.from_dense(nn.Linear(4, 4), 2, init="svd")


def test_layers_train_and_reduce_loss():
    # Both orders are trainable end to end with weight decay on every factor.
    torch.manual_seed(0)
    x, y = torch.randn(64, 10), torch.randn(64, 3)
    for order in ("chain", "product", "auto"):
        layer = ComposedLinear(10, 3, factor=3, forward_order=order)
        opt = torch.optim.SGD(layer.parameters(), lr=0.1, weight_decay=1e-4)
        first = None
        for _ in range(15):
            opt.zero_grad()
            loss = F.mse_loss(layer(x), y)
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
        assert loss.item() < 0.8 * first
