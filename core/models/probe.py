"""A dry forward that tells the user, before any training, what image size a model needs.

Library models (torchvision, timm) are built for ImageNet-sized images; many of them
pool below 1x1 or have fixed-size heads on the small images this service often meets.
One forward on zeros catches that when the model is built rather than in the first
training step, and probing larger sizes turns it into a message that says what to do.
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import SpecError

# Sizes tried, smallest first, to tell the user what image size a model needs.
PROBE_SIZES = (16, 32, 64, 75, 96, 128, 160, 224, 299, 384, 512)


def forward_ok(model: nn.Module, in_channels: int, size: int) -> bool:
    """Whether `model` (in eval mode) maps a (1, in_channels, size, size) batch at all."""
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, size, size))
    except (RuntimeError, ValueError, IndexError, AssertionError):
        return False
    return True


def check_takes_images(
    model: nn.Module, label: str, in_channels: int, image_size: int, *, probe: bool = True
) -> None:
    """SpecError naming the smallest size that works when `model` cannot take the images.

    `probe=False` for models built for one size (their positions are fixed at build
    time, so a larger probe would fail too and mislead). Leaves the model in train mode.
    A model on the meta device (built only for its state-dict shapes) is not run: many
    operations have no meta kernel.
    """
    if any(p.is_meta for p in model.parameters()):
        return
    model.eval()
    try:
        if forward_ok(model, in_channels, image_size):
            return
        larger = [s for s in PROBE_SIZES if s > image_size] if probe else []
        needed = next((s for s in larger if forward_ok(model, in_channels, s)), None)
    finally:
        model.train()
    if needed is not None:
        message = f"{label} needs images of at least {needed} px; dataset has {image_size} px"
    else:
        message = f"{label} cannot process {image_size} px images"
    raise SpecError(message + "; choose a zoo architecture (e.g. resnet20) or larger images")
