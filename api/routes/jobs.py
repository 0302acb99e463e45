"""Jobs: submit, list, read, cancel, retry, delete, metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.errors import field_error, not_found
from api.schemas import (
    EpochMetric,
    JobCreated,
    JobDetail,
    JobList,
    JobMetrics,
    JobSummary,
    compression_summary,
    job_detail,
)
from core.data import UPLOAD_PREFIX, available_datasets
from core.spec import JobSpec
from store import jobs as repo
from store.artifacts import artifact_store
from store.models import FINAL_STATES, JOB_STATES, Dataset, Job, User, utcnow
from worker.enqueue import enqueue_job

router = APIRouter(prefix="/jobs", tags=["jobs"])


def owned_job(session, job_id: str, user: User) -> Job:
    job = repo.get_owned_job(session, job_id, user.id)
    if job is None:
        raise not_found("job")
    return job


def check_dataset_reference(session, spec: JobSpec, user: User) -> None:
    """The service runs built-in datasets and the user's own uploads, never server paths."""
    reference = spec.data.dataset
    if reference in available_datasets():
        return
    if reference.startswith(UPLOAD_PREFIX):
        dataset_id = reference[len(UPLOAD_PREFIX) :]
        owned = session.scalar(
            select(Dataset.id).where(Dataset.id == dataset_id, Dataset.owner_id == user.id)
        )
        if owned is None:
            raise field_error(
                ["data", "dataset"],
                f"no uploaded dataset {reference!r}; GET /api/v1/datasets lists yours "
                "(reference upload:ID)",
            )
        return
    raise field_error(
        ["data", "dataset"],
        f"file paths are not accepted by the service; choose one of "
        f"{', '.join(available_datasets())} or upload the file (POST /api/v1/datasets) "
        "and use upload:ID",
    )


def submit(session, settings, user: User, spec: dict, retry_of: str | None = None) -> Job:
    job = repo.create_job(session, user.id, spec, queue=settings.queue_name, retry_of=retry_of)
    session.commit()
    try:
        enqueue_job(job.id, settings)
    except Exception as error:
        # Without a message no worker would ever see the job: end it visibly.
        job.status, job.finished_at = "failed", utcnow()
        job.failure_reason = f"Could not queue the job (broker unreachable: {error})."
        job.failure_kind = "broker"
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="The job queue (broker) is unreachable."
        ) from error
    return job


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobCreated)
def create_job(spec: JobSpec, session: SessionDep, user: CurrentUser, settings: SettingsDep):
    """Validate the job spec, store the job and queue it."""
    check_dataset_reference(session, spec, user)
    job = submit(session, settings, user, spec.model_dump(mode="json"))
    return JobCreated(id=job.id, status=job.status)


@router.get("", response_model=JobList)
def list_jobs(
    session: SessionDep,
    user: CurrentUser,
    status_: Annotated[
        str | None, Query(alias="status", description="queued, running, ...")
    ] = None,
    arch: str | None = None,
    dataset: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """The user's jobs, newest first."""
    if status_ is not None and status_ not in JOB_STATES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "type": "value_error",
                    "loc": ["query", "status"],
                    "msg": f"unknown status {status_!r}; choose one of {', '.join(JOB_STATES)}",
                }
            ],
        )
    items, total = repo.list_jobs(
        session, user.id, status=status_, arch=arch, dataset=dataset, limit=limit, offset=offset
    )
    return JobList(
        items=[JobSummary.model_validate(job) for job in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{job_id}", response_model=JobDetail)
def get_job(job_id: str, session: SessionDep, user: CurrentUser):
    return job_detail(owned_job(session, job_id, user))


@router.post("/{job_id}/cancel", response_model=JobDetail)
def cancel_job(job_id: str, session: SessionDep, user: CurrentUser, response: Response):
    """Queued: cancelled at once. Running: the worker stops at the next batch (202)."""
    job = owned_job(session, job_id, user)
    if job.status in FINAL_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"job already {job.status}")
    repo.request_cancel(session, job)
    session.commit()
    session.refresh(job)
    if job.status not in FINAL_STATES:
        response.status_code = status.HTTP_202_ACCEPTED
    return job_detail(job)


@router.post("/{job_id}/retry", status_code=status.HTTP_201_CREATED, response_model=JobCreated)
def retry_job(job_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep):
    """A new job with the same spec (the old one stays as it is)."""
    job = owned_job(session, job_id, user)
    if job.status not in FINAL_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"job is still {job.status}")
    spec = JobSpec.model_validate(job.spec)
    check_dataset_reference(session, spec, user)
    new = submit(session, settings, user, spec.model_dump(mode="json"), retry_of=job.id)
    return JobCreated(id=new.id, status=new.status)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_job(job_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep):
    """Remove the job, its history and artifacts (a running job is told to stop first)."""
    job = owned_job(session, job_id, user)
    if job.status not in FINAL_STATES:
        repo.request_cancel(session, job)
        session.commit()
    repo.delete_job_rows(session, job.id)
    session.commit()
    artifact_store(settings).delete(job.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{job_id}/metrics", response_model=JobMetrics)
def job_metrics(job_id: str, session: SessionDep, user: CurrentUser):
    """Per-epoch training metrics and, once succeeded, the compression summary."""
    job = owned_job(session, job_id, user)
    return JobMetrics(
        job_id=job.id,
        status=job.status,
        epochs=[EpochMetric.model_validate(row) for row in repo.metrics_of(session, job.id)],
        compression=compression_summary(job.result),
    )
