"""Spec resolution: fill a job spec's gaps from the recipe and the dataset.

A job spec may leave every training field out; `resolve_spec` fills the gaps
from the default recipe of the architecture's family (declared with the
architectures in core.catalog.archs) and from the dataset (classes, channels,
image size), so the rest of the engine only sees complete specs.
"""

from __future__ import annotations

from typing import Any

from core.catalog import (
    default_finetune_epochs,
    default_finetune_search,
    default_recipe,
    uses_channels_last,
)
from core.devices import resolve_device
from core.errors import SpecError
from core.spec import JobSpec


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


FROM_SCRATCH = "from scratch"
FROM_PRETRAINED = "from pretrained"


def starts_from_weights(spec: JobSpec) -> bool:
    return spec.model.weights is not None


# Whom a job's fine-tuning after truncation distils from (compress.distill).
FROM_YOUR_MODEL = "your model"
FROM_BEFORE_TRUNCATION = "the model before truncation"


def distilled_from(spec: JobSpec) -> str | None:
    """Whom the resolved `spec`'s fine-tuning distils from: the user's own model when the
    job starts from weights (what the user wants back; bench/README.md, "Warm start"),
    else the model before truncation; None without distillation or fine-tuning."""
    if not spec.compress.distill or not spec.compress.finetune_epochs:
        return None
    return FROM_YOUR_MODEL if starts_from_weights(spec) else FROM_BEFORE_TRUNCATION


def epochs_text(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def recipe_name(spec: JobSpec) -> str:
    """Which default recipe a job's training fields came from (the report records it)."""
    return FROM_PRETRAINED if starts_from_weights(spec) else FROM_SCRATCH


def resolve_spec(spec: JobSpec, info: Any, *, device: str | None = None) -> JobSpec:
    """A new spec with every None filled from the dataset `info` and the recipe.

    `info` has num_classes, in_channels and image_size (core.data.DatasetInfo).
    `device` decides the CUDA-only defaults (amp, compile, channels_last).
    """
    _check_model_fits_data(spec, info)
    device = device or resolve_device()
    on_cuda = device.startswith("cuda")

    model = spec.model.model_copy(
        update={
            "num_classes": spec.model.num_classes or info.num_classes,
            "in_channels": spec.model.in_channels or info.in_channels,
            "image_size": spec.model.image_size or info.image_size,
        }
    )
    # A job that starts from the user's trained weights fine-tunes them (the family's
    # "from pretrained" recipe); one without trains LoRITa from a random init.
    defaults = default_recipe(
        spec.model.arch, image_size=model.image_size, pretrained=starts_from_weights(spec)
    )
    defaults["amp"] = on_cuda
    defaults["compile"] = on_cuda
    # channels_last speeds up convolutions on tensor cores; it means nothing to the others.
    defaults["channels_last"] = on_cuda and uses_channels_last(spec.model.arch)

    given = spec.train.model_dump()
    train = spec.train.model_copy(
        update={key: (defaults[key] if given[key] is None else given[key]) for key in defaults}
    )
    compress = spec.compress
    pretrained = starts_from_weights(spec)
    if compress.finetune_epochs is None:
        compress = compress.model_copy(
            update={
                "finetune_epochs": default_finetune_epochs(spec.model.arch, pretrained=pretrained)
            }
        )
    if compress.finetune_search is None:
        compress = compress.model_copy(
            update={
                "finetune_search": default_finetune_search(spec.model.arch, pretrained=pretrained)
            }
        )
    return spec.model_copy(update={"model": model, "train": train, "compress": compress}, deep=True)


def recipe_info(spec: JobSpec):
    """The report's record of the recipe: its name and the values the training ran with."""
    from core.result import RecipeInfo

    train = spec.train
    return RecipeInfo(
        name=recipe_name(spec),
        epochs=train.epochs,
        optimizer=train.optimizer,
        lr=train.lr,
        weight_decay=train.weight_decay,
        batch_size=train.batch_size,
        schedule=train.schedule,
        finetune_epochs=spec.compress.finetune_epochs,
        distilled_from=distilled_from(spec),
    )
