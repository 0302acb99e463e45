"""SVD truncation and the two-layer low-rank form: exactness, sizes, reload."""

import pytest
import torch
from torch import nn

from core.factorize import factorize, merge
from core.lowrank import (
    LowRankConv2d,
    LowRankLinear,
    apply_lowrank_structure,
    dense_from_lowrank,
    lowrank_structure,
    pays_off,
    put_rank,
    singular_values,
    to_lowrank,
    truncate,
    weight_matrix,
    weight_svd,
)
from core.measure import count_flops, count_params


def _model(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, padding_mode="reflect"),  # 16 x 27
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),  # 32 x 144
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding="same", dilation=2, groups=2),  # grouped: never touched
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),  # 64 x 512
        nn.ReLU(),
        nn.Linear(64, 10),  # 10 x 64
    ).to(dtype)


INPUT = (3, 8, 8)
NAMES = ["0", "2", "7", "9"]


def test_weight_matrix_and_singular_values():
    model = _model()
    assert weight_matrix(model[2]).shape == (32, 144)
    values = singular_values(model)
    assert list(values) == NAMES  # every eligible layer by default, in module order
    for name, s in values.items():
        assert s.dtype == torch.float64
        assert torch.all(s[:-1] >= s[1:])
        expected = torch.linalg.svdvals(weight_matrix(model.get_submodule(name)))
        torch.testing.assert_close(s, expected)
    assert list(singular_values(model, ["9"])) == ["9"]


def test_singular_values_of_a_factorized_model_are_those_of_the_merged_weights():
    factorized = factorize(_model(), 3)
    merged = merge(factorized)
    for name, s in singular_values(factorized).items():
        torch.testing.assert_close(s, singular_values(merged, [name])[name])


def test_full_rank_changes_nothing():
    model = _model()
    ranks = {name: min(weight_matrix(model.get_submodule(name)).shape) for name in NAMES}
    for result in (truncate(model, ranks), to_lowrank(model, ranks)):
        assert lowrank_structure(result) == {}
        for key, value in model.state_dict().items():
            assert torch.equal(result.state_dict()[key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_truncation_error_is_the_tail_of_the_spectrum(name):
    model = _model()
    s = singular_values(model, [name])[name]
    for rank in (0, 1, 3, len(s) // 2):
        truncated = truncate(model, {name: rank})
        error = weight_matrix(truncated.get_submodule(name)) - weight_matrix(model[int(name)])
        expected = s[rank:].pow(2).sum().sqrt()
        torch.testing.assert_close(error.norm(), expected, rtol=1e-9, atol=1e-12)
        assert torch.linalg.matrix_rank(weight_matrix(truncated.get_submodule(name))) == rank


def test_truncate_leaves_other_layers_and_the_original_alone():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    truncated = truncate(model, {"7": 2})
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)  # not in place
        if not key.startswith("7."):
            assert torch.equal(truncated.state_dict()[key], value)
    assert truncate(model, {"7": 2}, inplace=True) is model


def test_pays_off():
    assert pays_off(100, 100, 49)
    assert not pays_off(100, 100, 50)
    assert pays_off(10, 64, 8) and not pays_off(10, 64, 9)


RANKS = {"0": 4, "2": 30, "7": 8, "9": 9}  # "2" (30*176 > 32*144) and "9" don't pay off


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_to_lowrank_computes_what_truncate_computes(dtype):
    model = _model(dtype).eval()
    lowrank = to_lowrank(model, RANKS)
    truncated = truncate(model, RANKS)
    x = torch.randn(4, *INPUT, dtype=dtype)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {}
    with torch.no_grad():
        torch.testing.assert_close(lowrank(x), truncated(x), **tol)
    assert lowrank_structure(lowrank) == {"0": 4, "7": 8}
    assert isinstance(lowrank[0], LowRankConv2d) and isinstance(lowrank[7], LowRankLinear)
    # Layers whose rank does not pay off stay dense, with their truncated weight.
    assert type(lowrank[2]) is nn.Conv2d and type(lowrank[9]) is nn.Linear
    assert torch.equal(lowrank[9].weight, truncated[9].weight)
    first, second = lowrank[0]
    assert (first.padding_mode, first.bias, second.kernel_size) == ("reflect", None, (1, 1))
    assert [k for k in lowrank.state_dict() if k.startswith("7.")] == [
        "7.0.weight",
        "7.1.weight",
        "7.1.bias",
    ]


def test_params_and_flops_of_the_lowrank_model_follow_the_formula():
    model = _model()
    lowrank = to_lowrank(model, RANKS)
    split = {"0": (16, 27, 4, 8 * 8), "7": (64, 512, 8, 1)}  # m, n, r, output positions
    saved_params = sum(m * n - r * (m + n) for m, n, r, _ in split.values())
    assert count_params(lowrank) == count_params(model) - saved_params
    saved_flops = sum(2 * p * (m * n - r * (m + n)) for m, n, r, p in split.values())
    assert count_flops(lowrank, INPUT) == count_flops(model, INPUT) - saved_flops


def test_lowrank_model_reloads_into_a_rebuilt_skeleton():
    model = _model(torch.float32).eval()
    lowrank = to_lowrank(model, RANKS)
    skeleton = apply_lowrank_structure(_model(torch.float32), lowrank_structure(lowrank))
    skeleton.load_state_dict(lowrank.state_dict(), strict=True)
    skeleton.eval()
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        torch.testing.assert_close(skeleton(x), lowrank(x))


def test_rank_zero_keeps_only_the_bias():
    model = _model()
    lowrank = to_lowrank(model, {"9": 0})
    assert type(lowrank[9]) is nn.Linear
    assert torch.count_nonzero(lowrank[9].weight) == 0


def test_factorized_model_is_merged_first():
    factorized = factorize(_model(), 2)
    lowrank = to_lowrank(factorized, {"7": 3})
    assert isinstance(lowrank[7], LowRankLinear)
    assert type(truncate(factorized, {"7": 3})[7]) is nn.Linear


def test_bad_ranks_are_rejected():
    model = _model()
    with pytest.raises(ValueError, match="no layer"):
        truncate(model, {"nope": 1})
    with pytest.raises(ValueError, match="grouped"):
        to_lowrank(model, {"5": 1})
    with pytest.raises(ValueError, match="rank"):
        truncate(model, {"7": -1})
    with pytest.raises(ValueError, match="not a Linear"):
        truncate(model, {"3": 1})


def test_dense_from_lowrank_is_the_inverse_of_to_lowrank():
    model = _model().eval()
    lowrank = to_lowrank(model, RANKS)
    dense = dense_from_lowrank(lowrank, model).eval()
    truncated = truncate(model, RANKS)
    assert [type(m) for m in dense.modules()] == [type(m) for m in model.modules()]
    for key, value in truncated.state_dict().items():
        torch.testing.assert_close(dense.state_dict()[key], value, rtol=1e-10, atol=1e-10)
    x = torch.randn(3, *INPUT, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(dense(x), lowrank(x), rtol=1e-10, atol=1e-10)
    assert lowrank_structure(lowrank) == {"0": 4, "7": 8}  # the low-rank model is untouched


def test_put_rank_with_a_given_svd_uses_those_factors():
    """The rank search passes its cached (float32, per-layer) SVD instead of a fresh one."""
    model = _model(torch.float32).eval()
    layer = model[7]
    u, s, vh = weight_svd(layer)
    scaled = (u.float(), 2 * s.float(), vh.float())  # an SVD of 2 * W
    model = put_rank(model, "7", layer, 8, scaled)
    assert isinstance(model[7], LowRankLinear) and model[7].rank == 8
    product = model[7][1].weight @ model[7][0].weight
    expected = 2 * truncate(_model(torch.float32), {"7": 8})[7].weight
    torch.testing.assert_close(product, expected, rtol=1e-4, atol=1e-5)
    # Not paying off: the same layer stays in place with its weight truncated.
    dense = model[9]
    model = put_rank(model, "9", dense, 9)
    assert model[9] is dense
    spectrum = torch.linalg.svdvals(dense.weight.double())
    assert spectrum[8] > 1e-3 and spectrum[9] < 1e-5 * spectrum[0]
