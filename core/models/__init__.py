"""Model zoo: build a classification model by name.

Zoo names (fcn, vgg*, resnet20/56, simplevit) are small CIFAR/MNIST-sized models;
"tv:NAME" builds any torchvision classification model from scratch.
"""

from __future__ import annotations

from torch import nn

from core.errors import SpecError

ZOO_ARCHS = (
    "fcn",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "resnet20",
    "resnet56",
    "simplevit",
)
TORCHVISION_PREFIX = "tv:"

# Per-architecture build options users may set; anything else is a typo.
_OPTIONS = {
    "fcn": {"hidden"},
    "simplevit": {"patch_size", "dim", "depth", "heads", "mlp_dim"},
}


def available_archs() -> list[str]:
    return list(ZOO_ARCHS)


def is_known_arch(name: str) -> bool:
    if name in ZOO_ARCHS:
        return True
    if name.startswith(TORCHVISION_PREFIX):
        from torchvision import models

        return name[len(TORCHVISION_PREFIX) :] in models.list_models(module=models)
    return False


def arch_family(arch: str) -> str:
    """ "fcn", "vgg", "resnet", "vit" or "torchvision" (recipes are chosen per family)."""
    if arch.startswith(TORCHVISION_PREFIX):
        return "torchvision"
    if arch == "fcn":
        return "fcn"
    if arch.startswith("vgg") and arch in ZOO_ARCHS:
        return "vgg"
    if arch.startswith("resnet") and arch in ZOO_ARCHS:
        return "resnet"
    if arch == "simplevit":
        return "vit"
    raise _unknown(arch)


def default_exclude(arch: str) -> list[str]:
    """Layer-name globs the engine leaves plain for this architecture.

    As in the paper's ViT, the patch embedding and the classification head are
    not factorized; every other architecture factorizes all eligible layers.
    """
    if arch == "simplevit":
        return ["patch_embed*", "head*"]
    return []


def _unknown(arch: str) -> SpecError:
    return SpecError(
        f"unknown arch {arch!r}; choose one of {', '.join(ZOO_ARCHS)} "
        "or tv:NAME for a torchvision classification model (e.g. tv:resnet18)"
    )


def build_model(
    arch: str, num_classes: int, in_channels: int, image_size: int, **options
) -> nn.Module:
    """Build an untrained model for (in_channels, image_size, image_size) inputs."""
    arch = arch.strip()
    if arch.startswith(TORCHVISION_PREFIX):
        if options:
            raise SpecError(f"{arch} takes no build options, got {sorted(options)}")
        from core.models.tv import build_torchvision

        return build_torchvision(
            arch[len(TORCHVISION_PREFIX) :], num_classes, in_channels, image_size
        )
    if arch not in ZOO_ARCHS:
        raise _unknown(arch)
    unknown = set(options) - _OPTIONS.get(arch, set())
    if unknown:
        allowed = sorted(_OPTIONS.get(arch, set())) or "none"
        raise SpecError(f"{arch} does not take option(s) {sorted(unknown)}; allowed: {allowed}")

    try:
        return _build_zoo(arch, num_classes, in_channels, image_size, options)
    except ValueError as error:  # shape rules of the model (e.g. patch size, heads)
        if isinstance(error, SpecError):
            raise
        raise SpecError(f"{arch}: {error}") from error


def _build_zoo(
    arch: str, num_classes: int, in_channels: int, image_size: int, options: dict
) -> nn.Module:
    if arch == "fcn":
        from core.models.fcn import DEFAULT_HIDDEN, FCN

        hidden = options.get("hidden", DEFAULT_HIDDEN)
        return FCN(in_channels * image_size * image_size, num_classes, hidden)
    if arch.startswith("vgg"):
        from core.models.vgg import VGG

        return VGG(arch, num_classes, in_channels, image_size)
    if arch.startswith("resnet"):
        from core.models.resnet import DEPTHS, CifarResNet

        return CifarResNet(DEPTHS[arch], num_classes, in_channels)
    from core.models.vit import SimpleViT

    return SimpleViT(num_classes, in_channels, image_size, **options)


__all__ = [
    "ZOO_ARCHS",
    "TORCHVISION_PREFIX",
    "available_archs",
    "is_known_arch",
    "arch_family",
    "default_exclude",
    "build_model",
]
