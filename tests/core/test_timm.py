"""timm:NAME models: built from the catalog, factorized where layers are eligible,
merged back exactly, and exported low-rank to ONNX that matches PyTorch."""

import numpy as np
import onnxruntime
import pytest
import timm
import torch
from torch import nn

from core.catalog import REGISTRY, default_recipe
from core.catalog.timm_names import TIMM_MODELS, TIMM_VERSION
from core.errors import SpecError
from core.factorize import composed_layers, eligible_layers, factorize, merge
from core.lowrank import lowrank_structure, to_lowrank, truncate, weight_matrix
from core.models import build_model
from core.onnx_export import export_onnx

SIZE, CLASSES = 32, 7

# One model per family the service is likely to meet: a ResNet, a ConvNeXt (depthwise
# 7x7 convs), a MobileNetV3 (depthwise convs, squeeze-excite, hard-swish), a ViT.
FAMILIES = [
    ("timm:resnet10t", 1),
    ("timm:convnext_atto", 3),
    ("timm:mobilenetv3_small_050", 3),
    ("timm:vit_tiny_patch16_224", 3),
]


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _input_dependent(logits: torch.Tensor) -> torch.Tensor:
    """The logits less their batch mean: an untrained model's outputs are mostly the
    classifier's bias, which would hide an error in the layers before it."""
    return logits - logits.mean(0)


def _with_moved_statistics(model: nn.Module, channels: int) -> nn.Module:
    """The float64 model in eval mode with BatchNorm statistics of real activations
    (as after training). With the init statistics, the deep mobile nets' activations
    shrink layer by layer until the logits hardly depend on the input, which would
    make every comparison below pass trivially."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches below
    with torch.no_grad():
        model.train()
        for scale in (1.0, 2.0):
            model(scale * torch.randn(4, channels, SIZE, SIZE, dtype=torch.float64) + 0.5)
    return model.eval()


@pytest.fixture(scope="module", params=FAMILIES, ids=[name for name, _ in FAMILIES])
def factorized(request):
    """(arch, channels, plain float64 model, its N=2 factorization in eval mode)."""
    arch, channels = request.param
    torch.manual_seed(0)
    plain = build_model(arch, CLASSES, channels, SIZE).to(torch.float64)
    # "chain" applies the two factors one after the other, so that the merged model
    # computing the same outputs is a real check, not the same product twice.
    model = factorize(plain, 2, forward_order="chain")
    return arch, channels, plain, _with_moved_statistics(model, channels)


def test_static_timm_names_match_the_installed_timm():
    # The API checks timm:NAME against this list without importing timm (or torch).
    assert timm.__version__ == TIMM_VERSION
    assert list(TIMM_MODELS) == timm.list_models()


def test_timm_archs_are_known_with_their_family_and_recipe():
    entry = REGISTRY.lookup("timm:convnext_atto")
    assert entry.family == "timm" and entry.fixed == {"name": "convnext_atto"}
    assert callable(entry.load_builder())
    assert default_recipe("timm:resnet18") == default_recipe("tv:resnet18")
    with pytest.raises(SpecError, match="not a timm model; close names: resnet18"):
        REGISTRY.lookup("timm:resnet181")


@pytest.mark.parametrize(("arch", "channels"), FAMILIES)
def test_timm_models_take_the_datasets_classes_and_channels(arch, channels):
    model = build_model(arch, CLASSES, channels, SIZE).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, SIZE, SIZE)).shape == (2, CLASSES)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == channels


def test_timm_models_too_large_for_the_images_say_so():
    with pytest.raises(SpecError, match=r"timm:inception_v3 needs images of at least 75 px"):
        build_model("timm:inception_v3", 10, 3, 32)
    with pytest.raises(SpecError, match="timm:vit_tiny_patch16_224 cannot process 8 px"):
        build_model("timm:vit_tiny_patch16_224", 10, 3, 8)


def test_grouped_convs_and_timm_subclasses_stay_plain(factorized):
    arch, _, plain, model = factorized
    grouped = [n for n, m in plain.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    composed = set(composed_layers(model))
    assert composed == set(eligible_layers(plain)) and composed
    assert not composed & set(grouped)
    for name in grouped:
        assert type(model.get_submodule(name)) is nn.Conv2d
    if arch in ("timm:convnext_atto", "timm:mobilenetv3_small_050"):
        assert grouped  # the depthwise convs exist and were left alone
    if arch == "timm:vit_tiny_patch16_224":
        block = {n for n in composed if n.startswith("blocks.0.")}
        assert block == {f"blocks.0.{n}" for n in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}


def test_same_padding_convs_stay_plain():
    # tf_* models pad "same" inside timm's Conv2dSame.forward: a composed layer would lose it.
    model = build_model("timm:tf_mobilenetv3_small_minimal_100", 10, 3, SIZE)
    same = [n for n, m in model.named_modules() if type(m).__name__ == "Conv2dSame"]
    assert same and not set(same) & set(eligible_layers(model))


def test_merge_is_exact_and_loads_strictly_into_a_fresh_model(factorized):
    arch, channels, _, model = factorized
    x = torch.randn(3, channels, SIZE, SIZE, dtype=torch.float64)
    merged = merge(model)
    assert not composed_layers(merged)
    with torch.no_grad():
        logits = model(x)
        expected, actual = _input_dependent(logits), _input_dependent(merged(x))
    # The logits differ across the batch, so the comparisons mean something.
    assert expected.norm() > 0.05 * logits.norm()
    assert _relative_error(actual, expected) < 1e-5
    fresh = build_model(arch, CLASSES, channels, SIZE).to(torch.float64).eval()
    fresh.load_state_dict(merged.state_dict(), strict=True)
    with torch.no_grad():
        assert _relative_error(_input_dependent(fresh(x)), expected) < 1e-5
        assert _relative_error(fresh(x), model(x)) < 1e-5


def test_lowrank_export_and_onnx_match_pytorch(factorized, tmp_path):
    arch, channels, _, model = factorized
    merged = merge(model).to(torch.float32).eval()
    ranks = {
        name: max(1, min(weight_matrix(merged.get_submodule(name)).shape) // 4)
        for name in composed_layers(model)
    }
    lowrank = to_lowrank(merged, ranks).eval()
    assert lowrank_structure(lowrank)  # some layers became two thin ones
    x = torch.randn(3, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = lowrank(x)
        truncated = truncate(merged, ranks).eval()(x)
    assert _relative_error(_input_dependent(expected), _input_dependent(truncated)) < 1e-4

    path = tmp_path / "model.onnx"
    export_onnx(lowrank, (channels, SIZE, SIZE), path)  # verifies against PyTorch itself
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": x.numpy()})
    scale = float(np.abs(expected.numpy()).max())
    assert np.abs(actual - expected.numpy()).max() <= 1e-4 * max(1.0, scale), arch
