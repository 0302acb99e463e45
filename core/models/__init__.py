"""Model zoo: build a classification model by name.

The names, their builders, build options and default exclusions are declared in
core.catalog.archs (torch-free, so the API can validate names); this package holds
the torch code the builders point at and builds a model from an entry.
"""

from __future__ import annotations

from torch import nn

from core.catalog import (
    REGISTRY,
    arch_family,
    available_archs,
    default_exclude,
    is_known_arch,
)
from core.errors import SpecError


def build_model(
    arch: str, num_classes: int, in_channels: int, image_size: int, **options
) -> nn.Module:
    """Build an untrained model for (in_channels, image_size, image_size) inputs."""
    entry = REGISTRY.lookup(arch)
    unknown = set(options) - entry.options
    if unknown:
        allowed = sorted(entry.options) or "none"
        raise SpecError(
            f"{entry.name} does not take option(s) {sorted(unknown)}; allowed: {allowed}"
        )
    builder = entry.load_builder()
    try:
        return builder(num_classes, in_channels, image_size, **entry.fixed, **options)
    except ValueError as error:  # shape rules of the model (e.g. patch size, heads)
        if isinstance(error, SpecError):
            raise
        raise SpecError(f"{entry.name}: {error}") from error


__all__ = [
    "available_archs",
    "is_known_arch",
    "arch_family",
    "default_exclude",
    "build_model",
]
