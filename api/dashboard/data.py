"""JSON endpoints only the dashboard needs (under /dashboard/api, signed in).

- `GET /dashboard/api/options`: architectures and each one's default training recipe,
  so the new-job form can show "blank = recipe default" as placeholders, and the spec
  defaults of the other fields it offers.

The job list is the API's own `GET /api/v1/jobs`: its rows carry the few result
numbers a list row shows (factor N, accuracy, params and FLOPs before/after).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser
from core.catalog import (
    TORCHVISION,
    available_archs,
    default_finetune_epochs,
    default_finetune_search,
    default_recipe,
)
from core.spec import CompressSpec
from store.models import JOB_STATES

router = APIRouter(prefix="/dashboard/api", include_in_schema=False)


def _recipe(arch: str) -> dict[str, Any]:
    recipe = default_recipe(arch)
    # Augmentation depends on the dataset's image size, not only the arch.
    recipe.pop("augment", None)
    # What a job from scratch does after truncation, when the form leaves it blank.
    recipe["finetune_epochs"] = default_finetune_epochs(arch)
    recipe["finetune_search"] = default_finetune_search(arch)
    return recipe


@router.get("/options")
def form_options(user: CurrentUser) -> dict[str, Any]:
    archs = available_archs()
    return {
        "archs": archs,
        "recipes": {arch: _recipe(arch) for arch in archs},
        # One torchvision model stands for the whole "tv:" family in the placeholders.
        "torchvision_recipe": _recipe(TORCHVISION.example),
        "states": list(JOB_STATES),
        # Spec defaults the form shows for a blank field, in the API's own unit
        # (the form converts to the unit it displays).
        "defaults": {
            "compress.max_accuracy_drop": CompressSpec.model_fields["max_accuracy_drop"].default,
        },
    }
