"""Any torchvision classification model, by name, trained from scratch.

The model is built without pretrained weights (nothing is downloaded), with the
requested number of classes, and its first convolution is rebuilt for the
dataset's number of input channels.
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import SpecError

# Sizes tried, smallest first, to tell the user what image size a model needs.
_PROBE_SIZES = (16, 32, 64, 75, 96, 128, 160, 224, 299, 384, 512)


def _builder_options(name: str, image_size: int) -> dict:
    options: dict = {}
    if name in ("googlenet", "inception_v3"):
        # Auxiliary heads return tuples in training mode; one logits tensor is the contract.
        options.update(aux_logits=False, init_weights=True)
    if name.startswith("vit_"):
        options["image_size"] = image_size
    return options


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    for qualified, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.in_channels == in_channels:
            return
        groups = module.groups if module.groups == 1 else in_channels
        new = nn.Conv2d(
            in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=groups if module.out_channels % groups == 0 else 1,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
        parent_name, _, child = qualified.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
        return


def _forward_ok(model: nn.Module, in_channels: int, size: int) -> bool:
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, size, size))
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


def build_torchvision(
    num_classes: int, in_channels: int, image_size: int, *, name: str
) -> nn.Module:
    """The registry's builder for "tv:NAME" (the catalog has checked NAME already)."""
    from torchvision import models

    try:
        model = models.get_model(
            name, weights=None, num_classes=num_classes, **_builder_options(name, image_size)
        )
    except (TypeError, ValueError, AssertionError) as error:
        raise SpecError(f"tv:{name} cannot be built for this dataset: {error}") from error
    _replace_first_conv(model, in_channels)

    # A dry forward on zeros catches models that cannot take images this small
    # (pooling below 1x1, fixed-size heads) now rather than in the first training step.
    model.eval()
    if not _forward_ok(model, in_channels, image_size):
        larger = [s for s in _PROBE_SIZES if s > image_size]
        if name.startswith("vit_"):
            larger = []  # its positions are built for one size: probing would mislead
        needed = next((s for s in larger if _forward_ok(model, in_channels, s)), None)
        if needed is not None:
            message = f"tv:{name} needs images of at least {needed} px; dataset has {image_size} px"
        else:
            message = f"tv:{name} cannot process {image_size} px images"
        raise SpecError(message + "; choose a zoo architecture (e.g. resnet20) or larger images")
    model.train()
    return model
