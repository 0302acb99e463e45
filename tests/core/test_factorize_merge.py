"""factorize/merge on whole models: exact merge, original state-dict keys, eligibility."""

import pytest
import torch
import torchvision
from torch import nn

from core.factorize import composed_layers, eligible_layers, factorize, merge
from core.layers import ComposedConv2d, ComposedLinear
from core.models import build_model, default_exclude


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: stays plain
        nn.Conv2d(8, 12, 3, stride=2, padding=2, dilation=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 16),
        nn.ReLU(),
        nn.Linear(16, 5),
    )


def _assert_merge_exact(plain: nn.Module, x: torch.Tensor, factor: int, **kwargs) -> None:
    """factorize -> (update BN stats) -> merge: same outputs, strict load into ``plain``."""
    plain = plain.double()
    x = x.double()
    factorized = factorize(plain, factor, **kwargs)
    assert composed_layers(factorized), "nothing was factorized"
    with torch.no_grad():
        factorized.train()(x)  # moves BatchNorm running statistics away from their init
        factorized.eval()
        expected = factorized(x)
        merged = merge(factorized)
        assert not composed_layers(merged)
        assert list(merged.state_dict()) == list(plain.state_dict())
        plain.load_state_dict(merged.state_dict(), strict=True)
        plain.eval()
        for out in (merged(x), plain(x)):
            error = (out - expected).norm() / expected.norm()
            assert error < 1e-5, error.item()


@pytest.mark.parametrize("factor", [2, 3])
def test_merge_is_exact_on_small_cnn(factor):
    torch.manual_seed(0)
    _assert_merge_exact(_small_cnn(), torch.randn(4, 3, 8, 8), factor)


ZOO_CASES = [
    ("fcn", 1, 8),
    ("vgg11", 3, 8),
    ("resnet20", 3, 8),
    ("simplevit", 3, 8),
    ("tv:resnet18", 1, 16),
]


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize(("arch", "channels", "size"), ZOO_CASES)
def test_merge_is_exact_on_zoo_models(arch, channels, size, factor):
    torch.manual_seed(0)
    model = build_model(arch, 10, channels, size)
    exclude = default_exclude(arch)
    before = eligible_layers(model, exclude=exclude)
    assert before
    _assert_merge_exact(model, torch.randn(3, channels, size, size), factor, exclude=exclude)


def test_vit_default_exclude_keeps_patch_embedding_and_head_plain():
    model = build_model("simplevit", 10, 3, 16)
    factorized = factorize(model, 2, exclude=default_exclude("simplevit"))
    assert type(factorized.patch_embed) is nn.Conv2d
    assert type(factorized.head) is nn.Linear
    assert isinstance(factorized.blocks[0].attn.qkv, ComposedLinear)
    assert isinstance(factorized.blocks[0].mlp.fc2, ComposedLinear)


def test_factorize_replaces_exactly_the_eligible_layers():
    model = _small_cnn()
    assert eligible_layers(model) == ["0", "4", "7", "9"]  # "3" is depthwise
    factorized = factorize(model, 3, forward_order="chain")
    assert composed_layers(factorized) == ["0", "4", "7", "9"]
    assert isinstance(factorized[0], ComposedConv2d) and factorized[0].factor == 3
    assert factorized[0].forward_order == "chain"
    assert type(factorized[3]) is nn.Conv2d
    # Not in place by default: the original model is untouched.
    assert type(model[0]) is nn.Conv2d
    assert factorize(model, 2, inplace=True) is model and isinstance(model[0], ComposedConv2d)


def test_include_and_exclude_globs():
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)))
    model.add_module("classifier", nn.Sequential(nn.Flatten(), nn.Linear(2, 3)))
    assert eligible_layers(model, include="features.*") == ["features.0", "features.1"]
    assert eligible_layers(model, exclude=["features.0", "classifier*"]) == ["features.1"]
    # exclude wins over include
    assert eligible_layers(model, include="features.*", exclude="*.1") == ["features.0"]
    assert eligible_layers(model, include=[]) == []


def test_factor_one_is_plain_training():
    model = _small_cnn()
    same = factorize(model, 1)
    assert same is not model and not composed_layers(same)
    assert list(same.state_dict()) == list(model.state_dict())
    with pytest.raises(ValueError, match="factor"):
        factorize(model, 0)


def test_multihead_attention_projections_stay_plain():
    # nn.MultiheadAttention reads out_proj.weight directly, so out_proj must stay plain;
    # the feed-forward Linears of a TransformerEncoderLayer are factorized.
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True, dropout=0.0)
    names = eligible_layers(layer)
    assert names == ["linear1", "linear2"]
    factorized = factorize(layer.double(), 2)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        train_out = factorized.train()(x)
        # eval mode takes PyTorch's fused fast path, which reads linear1.weight directly
        eval_out = factorized.eval()(x)
        merged_out = merge(factorized).eval()(x)
    torch.testing.assert_close(train_out, eval_out)
    torch.testing.assert_close(eval_out, merged_out)


def test_torchvision_vit_factorizes_and_runs():
    model = torchvision.models.VisionTransformer(
        image_size=16,
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        num_classes=3,
    )
    factorized = factorize(model, 2)
    assert "encoder.layers.encoder_layer_0.self_attn.out_proj" not in composed_layers(factorized)
    assert "encoder.layers.encoder_layer_0.mlp.0" in composed_layers(factorized)
    x = torch.randn(2, 3, 16, 16)
    factorized.eval()
    with torch.no_grad():
        torch.testing.assert_close(merge(factorized)(x), factorized(x), rtol=1e-4, atol=1e-5)


def test_shared_modules_stay_shared_and_tied_weights_are_skipped():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    factorized = factorize(model, 2)
    assert isinstance(factorized[0], ComposedLinear) and factorized[0] is factorized[2]
    merged = merge(factorized)
    assert type(merged[0]) is nn.Linear and merged[0] is merged[2]

    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    tied[1].weight = tied[0].weight
    assert eligible_layers(tied) == ["2"]


def test_root_layer_and_subclasses():
    assert isinstance(factorize(nn.Linear(3, 2), 2), ComposedLinear)
    assert type(merge(factorize(nn.Conv2d(1, 2, 3), 3))) is nn.Conv2d

    class MyLinear(nn.Linear):  # may do more than a Linear in forward: left alone
        pass

    assert eligible_layers(nn.Sequential(MyLinear(2, 2))) == []


def test_merge_keeps_dtype_device_and_mode():
    model = _small_cnn().double().eval()
    merged = merge(factorize(model, 2))
    assert all(p.dtype == torch.float64 for p in merged.parameters())
    assert not any(m.training for m in merged.modules())
    assert [type(m) for m in merged.modules()] == [type(m) for m in model.modules()]
