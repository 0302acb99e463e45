"""Default training recipes per architecture family, and spec resolution.

A job spec may leave every training field out; `resolve_spec` fills the gaps
from the recipe of the architecture's family and from the dataset (classes,
channels, image size), so the rest of the engine only sees complete specs.

Weight decay is what makes LoRITa work: on a composition of N linear maps the
L2 penalty on the factors acts as a Schatten-(2/N) penalty on their product and
pushes it towards low rank. The per-family values live in one table below so a
benchmark can tune them in one place.
"""

from __future__ import annotations

from typing import Any

import torch

from core.errors import SpecError
from core.spec import JobSpec

# The method's engine: L2 weight decay applied to every factor (see module docstring).
WEIGHT_DECAY: dict[str, float] = {
    "fcn": 1e-4,
    "vgg": 5e-4,
    "resnet": 5e-4,
    "vit": 5e-2,
    "torchvision": 5e-4,
}

EPOCHS: dict[str, int] = {
    "fcn": 10,
    "vgg": 30,
    "resnet": 30,
    "vit": 30,
    "torchvision": 30,
}

_SGD = {
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "schedule": "cosine",
    "label_smoothing": 0.1,
}

# Everything but the epochs and weight decay (taken from the tables above).
_RECIPES: dict[str, dict[str, Any]] = {
    "fcn": {
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.9,
        "schedule": "cosine",
        "label_smoothing": 0.0,
    },
    "vgg": _SGD,
    "resnet": _SGD,
    "torchvision": _SGD,
    "vit": {
        "batch_size": 128,
        "optimizer": "adamw",
        "lr": 1e-3,
        "momentum": 0.9,
        "schedule": "cosine",
        "label_smoothing": 0.1,
    },
}

# Random crops of a few pixels only make sense once an image has some room.
MIN_AUGMENT_SIZE = 28


def arch_family_of(arch: str) -> str:
    """The recipe family of an architecture name."""
    from core.models import arch_family

    family = arch_family(arch)
    if family not in _RECIPES:
        raise SpecError(f"no training recipe for architecture family {family!r} (arch {arch!r})")
    return family


def default_recipe(arch: str, *, image_size: int | None = None) -> dict[str, Any]:
    """Training fields (TrainSpec names) for `arch`; cuda-only switches are left out."""
    family = arch_family_of(arch)
    recipe = dict(_RECIPES[family])
    recipe["epochs"] = EPOCHS[family]
    recipe["weight_decay"] = WEIGHT_DECAY[family]
    # Augmentation is for image models on images large enough to crop; the FCN
    # sees pixels as a flat vector, where shifting them only blurs the classes.
    recipe["augment"] = (
        family != "fcn" and image_size is not None and image_size >= MIN_AUGMENT_SIZE
    )
    return recipe


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_model_fits_data(spec: JobSpec, info: Any) -> None:
    """A model field set by the user must agree with the dataset; say what to change."""
    model = spec.model
    if model.in_channels is not None and model.in_channels != info.in_channels:
        raise SpecError(
            f"model.in_channels is {model.in_channels} but the dataset has "
            f"{info.in_channels} channel(s); remove model.in_channels or set it to "
            f"{info.in_channels}"
        )
    if model.image_size is not None and model.image_size != info.image_size:
        raise SpecError(
            f"model.image_size is {model.image_size} but the dataset's images are "
            f"{info.image_size} px; remove model.image_size or set it to {info.image_size}"
        )
    if model.num_classes is not None and model.num_classes < info.num_classes:
        raise SpecError(
            f"model.num_classes is {model.num_classes} but the dataset has "
            f"{info.num_classes} classes; remove model.num_classes or set it to at least "
            f"{info.num_classes}"
        )


def resolve_spec(spec: JobSpec, info: Any, *, device: str | None = None) -> JobSpec:
    """A new spec with every None filled from the dataset `info` and the recipe.

    `info` has num_classes, in_channels and image_size (core.data.DatasetInfo).
    `device` decides the CUDA-only defaults (amp, compile, channels_last).
    """
    _check_model_fits_data(spec, info)
    device = device or default_device()
    on_cuda = device.startswith("cuda")
    family = arch_family_of(spec.model.arch)

    model = spec.model.model_copy(
        update={
            "num_classes": spec.model.num_classes or info.num_classes,
            "in_channels": spec.model.in_channels or info.in_channels,
            "image_size": spec.model.image_size or info.image_size,
        }
    )
    defaults = default_recipe(spec.model.arch, image_size=model.image_size)
    defaults["amp"] = on_cuda
    defaults["compile"] = on_cuda
    # channels_last speeds up convolutions on tensor cores; it means nothing to the others.
    defaults["channels_last"] = on_cuda and family in ("vgg", "resnet", "torchvision")

    given = spec.train.model_dump()
    train = spec.train.model_copy(
        update={key: (defaults[key] if given[key] is None else given[key]) for key in defaults}
    )
    return spec.model_copy(update={"model": model, "train": train}, deep=True)
