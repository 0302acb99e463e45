"""The model zoo builds every architecture for the dataset shapes the service meets,
and the torch-free registry (core.catalog) agrees with the code it points at."""

import pytest
import torch
from torch import nn
from torchvision import models as tv_models

from core.catalog import REGISTRY, ArchRegistry, Family, Recipe, default_recipe
from core.catalog.torchvision_names import TORCHVISION_MODELS
from core.errors import SpecError
from core.models import (
    arch_family,
    available_archs,
    build_model,
    default_exclude,
    is_known_arch,
)
from core.models.vgg import VGG
from core.models.vit import auto_patch_size


def _forward(model: nn.Module, channels: int, size: int) -> torch.Tensor:
    model.train()  # BatchNorm in training mode needs a batch of more than one
    with torch.no_grad():
        return model(torch.randn(3, channels, size, size))


@pytest.mark.parametrize("arch", available_archs())
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_zoo_arch_forwards_to_class_logits(arch, channels, size):
    model = build_model(arch, num_classes=7, in_channels=channels, image_size=size)
    assert _forward(model, channels, size).shape == (3, 7)


@pytest.mark.parametrize("arch", ["fcn", "simplevit", "resnet20", "vgg11"])
def test_small_archs_take_8px_digits(arch):
    model = build_model(arch, num_classes=10, in_channels=1, image_size=8)
    assert _forward(model, 1, 8).shape == (3, 10)


def test_fcn_is_linear_batchnorm_relu_blocks_on_flattened_input():
    model = build_model("fcn", 10, 1, 8, hidden=[32, 16])
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert model.layers[0].in_features == 64


def test_resnet_shortcuts_have_no_weights():
    model = build_model("resnet20", 10, 3, 32)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19  # 1 stem + 3 stages x 3 blocks x 2 convs
    assert all("shortcut" not in name for name in convs)


def test_simplevit_uses_plain_linears_and_excludes_embedding_and_head():
    model = build_model("simplevit", 10, 3, 32)
    linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "head"} <= linears
    assert default_exclude("simplevit") == ["patch_embed*", "head*"]
    assert default_exclude("vgg16") == [] and default_exclude("tv:resnet18") == []
    assert model.patch_size == 4


def test_vit_patch_size_is_picked_and_checked():
    assert (auto_patch_size(28), auto_patch_size(32), auto_patch_size(8)) == (4, 4, 2)
    with pytest.raises(SpecError, match="must divide image_size"):
        build_model("simplevit", 10, 1, 28, patch_size=5)


@pytest.mark.parametrize("name", ["tv:resnet18", "tv:mobilenet_v3_small"])
def test_torchvision_models_take_one_channel(name):
    model = build_model(name, num_classes=5, in_channels=1, image_size=32)
    assert _forward(model, 1, 32).shape == (3, 5)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1


def test_torchvision_model_too_large_for_tiny_images_names_the_size():
    with pytest.raises(
        SpecError, match=r"tv:alexnet needs images of at least \d+ px; dataset has 8"
    ):
        build_model("tv:alexnet", 10, 1, 8)


def test_unknown_arch_lists_the_choices():
    assert not is_known_arch("vgg15")
    with pytest.raises(SpecError, match="unknown arch 'vgg15'.*resnet20"):
        build_model("vgg15", 10, 3, 32)
    with pytest.raises(SpecError, match="not a torchvision classification model"):
        build_model("tv:no_such_net", 10, 3, 32)
    with pytest.raises(SpecError, match="does not take option"):
        build_model("vgg11", 10, 3, 32, hidden=[3])


def test_arch_family():
    families = {a: arch_family(a) for a in ("fcn", "vgg16", "resnet56", "simplevit", "tv:vgg11")}
    assert families == {
        "fcn": "fcn",
        "vgg16": "vgg",
        "resnet56": "resnet",
        "simplevit": "vit",
        "tv:vgg11": "torchvision",
    }
    with pytest.raises(SpecError):
        arch_family("lenet")


def test_static_torchvision_names_match_the_installed_torchvision():
    # The API checks tv:NAME against this list without importing torchvision.
    assert list(TORCHVISION_MODELS) == tv_models.list_models(module=tv_models)


def test_every_registered_builder_imports_and_takes_its_fixed_arguments():
    for arch in available_archs():
        entry = REGISTRY.lookup(arch)
        assert callable(entry.load_builder()), entry.builder
        assert entry.family in REGISTRY.families
    model = REGISTRY.lookup("tv:resnet18")
    assert callable(model.load_builder()) and model.fixed == {"name": "resnet18"}


def test_vgg_builds_without_batchnorm_for_a_registry_entry():
    plain = VGG(10, 3, 32, layout="vgg11", batch_norm=False)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in plain.modules())
    with_bn = VGG(10, 3, 32, layout="vgg11")
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 == len([m for m in with_bn.modules() if isinstance(m, nn.Conv2d)])
    assert _forward(plain, 3, 32).shape == (3, 10)


def _registry() -> ArchRegistry:
    registry = ArchRegistry()
    recipe = Recipe(30, 5e-4, 128, "sgd", 0.05, 0.9, "cosine", 0.1)
    registry.add_family(Family("vgg", recipe, channels_last=True))
    return registry


def test_an_entry_may_override_its_familys_recipe():
    registry = _registry()
    registry.register("plain", "vgg", "core.models.vgg:VGG", fixed={"layout": "vgg11"})
    registry.register(
        "plain_nobn",
        "vgg",
        "core.models.vgg:VGG",
        fixed={"layout": "vgg11", "batch_norm": False},
        recipe={"lr": 0.01},
    )
    assert registry.recipe_of("plain").lr == 0.05
    assert registry.recipe_of("plain_nobn").lr == 0.01
    assert registry.recipe_of("plain_nobn").epochs == 30


def test_registry_refuses_inconsistent_declarations():
    registry = _registry()
    registry.register("a", "vgg", "core.models.vgg:VGG")
    with pytest.raises(ValueError, match="twice"):
        registry.register("a", "vgg", "core.models.vgg:VGG")
    with pytest.raises(ValueError, match="unknown family"):
        registry.register("b", "transformer", "core.models.vit:SimpleViT")
    with pytest.raises(ValueError, match="unknown recipe fields"):
        registry.register("c", "vgg", "core.models.vgg:VGG", recipe={"learning_rate": 1})


def test_default_recipe_comes_from_the_family():
    fcn, vit = default_recipe("fcn", image_size=28), default_recipe("simplevit", image_size=32)
    assert (fcn["optimizer"], fcn["weight_decay"], fcn["augment"]) == ("adamw", 0.2, False)
    assert (vit["optimizer"], vit["weight_decay"], vit["augment"]) == ("adamw", 5e-2, True)
    assert default_recipe("tv:resnet18", image_size=8)["augment"] is False  # too small to crop
    assert default_recipe("resnet20") == default_recipe("tv:resnet18")


def test_vgg11_without_batchnorm_is_one_registry_entry():
    """Adding an architecture is one entry in core/catalog/archs.py: it builds, factorizes
    and merges exactly, is accepted by the job spec and gets its family's recipe."""
    from core.catalog import default_recipe
    from core.factorize import factorize, merge
    from core.spec import JobSpec

    model = build_model("vgg11_nobn", 10, 1, 32).double().eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    merged = merge(factorize(model, 3, init="pretrained")).eval()
    x = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(merged(x), model(x), rtol=1e-9, atol=1e-9)
    JobSpec.model_validate({"model": {"arch": "vgg11_nobn"}, "data": {"dataset": "digits"}})
    assert default_recipe("vgg11_nobn")["lr"] == 0.01
