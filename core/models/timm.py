"""Any timm model, by name ("timm:NAME"), trained from scratch or from uploaded weights.

timm builds the model itself for the requested classes and input channels
(`num_classes`, `in_chans`); nothing is downloaded (`pretrained=False`: a user's own
weights arrive as an upload instead). Models whose positions depend on the image
size (ViT, DeiT, Swin, ...) take `img_size`; the others refuse that argument, so it
is offered first and dropped when refused.

Factorization needs nothing timm-specific: core.factorize replaces exactly the plain
nn.Linear / nn.Conv2d (groups == 1) modules. timm's own subclasses stay plain on
purpose: Conv2dSame pads in its forward, StdConv2d standardises its weight, and
timm.layers.Linear (used by some classifier heads) is left as the small head it is.
Attention layers that read `qkv.weight` directly (EVA, BEiT) see the composed
layer's merged weight, so they stay correct and differentiable.
"""

from __future__ import annotations

import timm
from torch import nn

from core.errors import SpecError
from core.models.probe import check_takes_images


def _create(
    name: str, num_classes: int, in_channels: int, image_size: int
) -> tuple[nn.Module, bool]:
    """The model, and whether it was built for `image_size` (it took `img_size`)."""
    common = {"pretrained": False, "num_classes": num_classes, "in_chans": in_channels}
    try:
        return timm.create_model(name, img_size=image_size, **common), True
    except TypeError as error:
        if "img_size" not in str(error):
            raise
    return timm.create_model(name, **common), False


def build_timm(num_classes: int, in_channels: int, image_size: int, *, name: str) -> nn.Module:
    """The registry's builder for "timm:NAME" (the catalog has checked NAME already)."""
    try:
        model, sized = _create(name, num_classes, in_channels, image_size)
    except (TypeError, ValueError, AssertionError, RuntimeError) as error:
        raise SpecError(f"timm:{name} cannot be built for this dataset: {error}") from error
    # A model built for this image size cannot be probed at other sizes.
    check_takes_images(model, f"timm:{name}", in_channels, image_size, probe=not sized)
    return model
