"""JSON endpoints only the dashboard needs (under /dashboard/api, signed in).

- `GET /dashboard/api/options`: architectures and each one's default training recipe,
  so the new-job form can show "blank = recipe default" as placeholders.
- `GET /dashboard/api/jobs`: the job list with the few result numbers a list row
  shows (factor N, accuracy, params and FLOPs before/after), so the jobs page needs
  one request per refresh instead of one per finished job.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentUser, SessionDep
from api.schemas import JobSummary
from store.jobs import list_jobs
from store.models import JOB_STATES, Job

router = APIRouter(prefix="/dashboard/api", include_in_schema=False)

# A torchvision model stands for the whole "tv:" family in the form's placeholders.
TORCHVISION_EXAMPLE = "tv:resnet18"
ROW_RESULT_KEYS = ("accuracy", "params", "flops")


class DashboardJob(JobSummary):
    factor: int | None = None
    baseline: bool = False
    summary: dict[str, Any] | None = None


class DashboardJobList(BaseModel):
    items: list[DashboardJob]
    total: int
    limit: int
    offset: int


def _recipe(arch: str) -> dict[str, Any] | None:
    # Imported here: the recipe table lives with the engine and pulls in torch.
    from core.recipes import default_recipe

    try:
        recipe = default_recipe(arch)
    except Exception:  # an arch without a recipe just shows no placeholders
        return None
    # Augmentation depends on the dataset's image size, not only the arch.
    recipe.pop("augment", None)
    return recipe


@router.get("/options")
def form_options(user: CurrentUser) -> dict[str, Any]:
    from core.models import available_archs

    archs = available_archs()
    return {
        "archs": archs,
        "recipes": {arch: recipe for arch in archs if (recipe := _recipe(arch)) is not None},
        "torchvision_recipe": _recipe(TORCHVISION_EXAMPLE),
        "states": list(JOB_STATES),
    }


def _row(job: Job) -> DashboardJob:
    spec = job.spec or {}
    result = job.result or {}
    summary = {key: result[key] for key in ROW_RESULT_KEYS if key in result} or None
    return DashboardJob.model_validate(
        {
            **JobSummary.model_validate(job).model_dump(),
            "factor": (spec.get("lorita") or {}).get("factor", result.get("factor")),
            "baseline": bool(spec.get("baseline")),
            "summary": summary,
        }
    )


@router.get("/jobs")
def dashboard_jobs(
    user: CurrentUser,
    session: SessionDep,
    status: str | None = Query(None),
    arch: str | None = Query(None),
    dataset: str | None = Query(None),
    limit: int = Query(25, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> DashboardJobList:
    jobs, total = list_jobs(
        session, user.id, status=status, arch=arch, dataset=dataset, limit=limit, offset=offset
    )
    return DashboardJobList(
        items=[_row(job) for job in jobs], total=total, limit=limit, offset=offset
    )
