"""Jobs: submit, list, read, cancel, retry, delete, metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import CurrentUser, OwnedJob, SessionDep, SettingsDep
from api.errors import field_error, not_found
from api.openapi import CONFLICT, responses
from api.routes.models import with_weights_reference
from api.schemas import (
    EpochMetric,
    JobCreated,
    JobDetail,
    JobList,
    JobMetrics,
    compression_summary,
    job_detail,
    job_summary,
)
from core.catalog import available_datasets, parse_upload_reference
from core.spec import JobSpec
from store import jobs as repo
from store.artifacts import artifact_store
from store.datasets import get_owned_dataset
from store.models import FINAL_STATES, Job, JobStatus, User, utcnow
from worker.enqueue import enqueue_job

router = APIRouter(prefix="/jobs", tags=["jobs"])

# Bounds of the list's paging: past them a database would overflow (bigint offsets).
MAX_OFFSET = 2**31 - 1


def check_dataset_reference(session, spec: JobSpec, user: User) -> None:
    """The service runs built-in datasets and the user's own uploads, never server paths."""
    reference = spec.data.dataset
    if reference in available_datasets():
        return
    dataset_id = parse_upload_reference(reference)
    if dataset_id is not None:
        if get_owned_dataset(session, dataset_id, user.id) is None:
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


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobCreated,
    responses=responses(503, description_503="The database or the job queue is unavailable."),
)
def create_job(spec: JobSpec, session: SessionDep, user: CurrentUser, settings: SettingsDep):
    """Validate the job spec, store the job and queue it."""
    check_dataset_reference(session, spec, user)
    spec = with_weights_reference(session, spec, user)
    job = submit(session, settings, user, spec.model_dump(mode="json"))
    return JobCreated(id=job.id, status=job.status)


@router.get("", response_model=JobList)
def list_jobs(
    session: SessionDep,
    user: CurrentUser,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    arch: str | None = None,
    dataset: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
):
    """The user's jobs, newest first."""
    items, total = repo.list_jobs(
        session, user.id, status=status_, arch=arch, dataset=dataset, limit=limit, offset=offset
    )
    session.commit()  # the rows are loaded: give the connection back before serialising
    return JobList(
        items=[job_summary(job) for job in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{job_id}", response_model=JobDetail)
async def get_job(job: OwnedJob):
    return job_detail(job)


def reread(session, job: Job) -> Job:
    """The job again, in this handler's session (OwnedJob loaded it in a short one)."""
    row = session.get(Job, job.id)
    if row is None:  # deleted meanwhile
        raise not_found("job")
    return row


@router.post(
    "/{job_id}/cancel",
    response_model=JobDetail,
    responses={
        202: {"model": JobDetail, "description": "Running: the worker stops at the next batch"},
        **CONFLICT,
    },
)
def cancel_job(job: OwnedJob, session: SessionDep, response: Response):
    """Queued: cancelled at once. Running: the worker stops at the next batch (202)."""
    job = reread(session, job)
    if job.status in FINAL_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"job already {job.status}")
    repo.request_cancel(session, job)
    session.commit()
    session.refresh(job)
    session.commit()
    if job.status not in FINAL_STATES:
        response.status_code = status.HTTP_202_ACCEPTED
    return job_detail(job)


@router.post(
    "/{job_id}/retry",
    status_code=status.HTTP_201_CREATED,
    response_model=JobCreated,
    responses={
        **CONFLICT,
        **responses(503, description_503="The database or the job queue is unavailable."),
    },
)
def retry_job(job: OwnedJob, session: SessionDep, user: CurrentUser, settings: SettingsDep):
    """A new job with the same spec (the old one stays as it is)."""
    if job.status not in FINAL_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"job is still {job.status}")
    spec = JobSpec.model_validate(job.spec)
    check_dataset_reference(session, spec, user)
    spec = with_weights_reference(session, spec, user)
    new = submit(session, settings, user, spec.model_dump(mode="json"), retry_of=job.id)
    return JobCreated(id=new.id, status=new.status)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_job(job: OwnedJob, session: SessionDep, settings: SettingsDep):
    """Remove the job, its history and artifacts (a running job is told to stop first)."""
    job = reread(session, job)
    if job.status not in FINAL_STATES:
        repo.request_cancel(session, job)
        session.commit()
    repo.delete_job_rows(session, job.id)
    session.commit()
    artifact_store(settings).delete(job.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{job_id}/metrics", response_model=JobMetrics)
def job_metrics(job: OwnedJob, session: SessionDep):
    """Per-epoch training metrics and, once succeeded, the compression summary."""
    rows = repo.metrics_of(session, job.id)
    session.commit()
    return JobMetrics(
        job_id=job.id,
        status=job.status,
        epochs=[EpochMetric.model_validate(row) for row in rows],
        compression=compression_summary(job.result),
    )
