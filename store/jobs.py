"""Job repository: the queries and guarded state changes the API and the worker share.

Every state change is one UPDATE ... WHERE status = <expected>, so two processes
racing (a cancel against a worker start, two workers against one message) cannot
both win: the caller learns from the return value whether its change happened.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from store.models import (
    CANCELLED,
    FAILED,
    FINAL_STATES,
    QUEUED,
    RUNNING,
    Job,
    JobEvent,
    JobMetric,
    utcnow,
)

METRIC_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "epochs")


def json_safe(value: Any) -> Any:
    """NaN/inf become None (PostgreSQL's JSON rejects them); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# --- creation and reading -----------------------------------------------------------


def create_job(
    session: Session,
    owner_id: int,
    spec: dict[str, Any],
    *,
    queue: str,
    retry_of: str | None = None,
) -> Job:
    job = Job(
        owner_id=owner_id,
        queue=queue,
        spec=spec,
        arch=spec["model"]["arch"],
        dataset=spec["data"]["dataset"],
        status=QUEUED,
        progress=0.0,
        retry_of=retry_of,
        cancel_requested=False,
        attempts=0,
    )
    session.add(job)
    session.flush()
    add_event(session, job.id, "state", {"status": QUEUED})
    return job


def get_owned_job(session: Session, job_id: str, owner_id: int) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.owner_id == owner_id))


def list_jobs(
    session: Session,
    owner_id: int,
    *,
    status: str | None = None,
    arch: str | None = None,
    dataset: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    query = select(Job).where(Job.owner_id == owner_id)
    if status:
        query = query.where(Job.status == status)
    if arch:
        query = query.where(Job.arch == arch)
    if dataset:
        query = query.where(Job.dataset == dataset)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def add_event(session: Session, job_id: str, type_: str, data: dict[str, Any]) -> JobEvent:
    row = JobEvent(job_id=job_id, type=type_, data=json_safe(data))
    session.add(row)
    session.flush()
    return row


def events_after(session: Session, job_id: str, after_id: int, limit: int = 500) -> list[JobEvent]:
    return list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
            .order_by(JobEvent.id)
            .limit(limit)
        ).all()
    )


def metrics_of(session: Session, job_id: str) -> list[JobMetric]:
    return list(
        session.scalars(
            select(JobMetric)
            .where(JobMetric.job_id == job_id)
            .order_by(JobMetric.created_at, JobMetric.id)
        ).all()
    )


def record_epoch(session: Session, job_id: str, event: dict[str, Any]) -> None:
    """Store one epoch's metrics; a resumed run that repeats an epoch replaces its row."""
    run, epoch = str(event.get("run", "lorita")), int(event["epoch"])
    values = {k: json_safe(event.get(k)) for k in METRIC_FIELDS}
    row = session.scalar(
        select(JobMetric).where(
            JobMetric.job_id == job_id, JobMetric.run == run, JobMetric.epoch == epoch
        )
    )
    if row is None:
        session.add(JobMetric(job_id=job_id, run=run, epoch=epoch, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
        row.created_at = utcnow()
    session.flush()


# --- state changes ----------------------------------------------------------------


def claim_job(session: Session, job_id: str, worker: str) -> bool:
    """queued -> running for this worker; False when someone else has it or it ended."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED, Job.cancel_requested.is_(False))
        .values(
            status=RUNNING,
            worker=worker,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            heartbeat_at=now,
        )
    )
    return result.rowcount == 1


def touch_job(session: Session, job_id: str, worker: str, **values: Any) -> bool:
    """Heartbeat (+ progress/stage) of a running job; False once the job is no longer ours."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING, Job.worker == worker)
        .values(heartbeat_at=utcnow(), **values)
    )
    return result.rowcount == 1


def stop_requested(session: Session, job_id: str) -> bool:
    """True when the job was cancelled, deleted or taken away from its worker."""
    row = session.execute(select(Job.status, Job.cancel_requested).where(Job.id == job_id)).first()
    return row is None or row.cancel_requested or row.status != RUNNING


def finish_job(
    session: Session,
    job_id: str,
    worker: str,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    failure_reason: str | None = None,
    failure_kind: str | None = None,
    progress: float | None = None,
) -> bool:
    if status not in FINAL_STATES:
        raise ValueError(f"{status!r} is not a final state")
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "result": json_safe(result) if result is not None else None,
        "failure_reason": failure_reason,
        "failure_kind": failure_kind,
    }
    if progress is not None:
        values["progress"] = progress
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING, Job.worker == worker)
        .values(**values)
    )
    if done.rowcount != 1:
        return False
    event: dict[str, Any] = {"status": status}
    if failure_reason:
        event.update(failure_reason=failure_reason, failure_kind=failure_kind)
    add_event(session, job_id, "state", event)
    return True


def requeue_job(session: Session, job_id: str, worker: str, reason: str) -> bool:
    """running -> queued (this worker is shutting down); the checkpoint stays for the next."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING, Job.worker == worker)
        .values(status=QUEUED, worker=None, heartbeat_at=None)
    )
    if done.rowcount != 1:
        return False
    add_event(session, job_id, "state", {"status": QUEUED, "reason": reason})
    return True


def request_cancel(session: Session, job: Job) -> str:
    """Cancel now when queued; ask the worker to stop when running. Returns the new status."""
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == QUEUED)
        .values(status=CANCELLED, finished_at=now, cancel_requested=True)
    )
    if done.rowcount == 1:
        add_event(session, job.id, "state", {"status": CANCELLED})
        return CANCELLED
    session.execute(
        update(Job).where(Job.id == job.id, Job.status == RUNNING).values(cancel_requested=True)
    )
    session.refresh(job)
    return job.status


def delete_job_rows(session: Session, job_id: str) -> None:
    session.execute(delete(JobEvent).where(JobEvent.job_id == job_id))
    session.execute(delete(JobMetric).where(JobMetric.job_id == job_id))
    session.execute(update(Job).where(Job.retry_of == job_id).values(retry_of=None))
    session.execute(delete(Job).where(Job.id == job_id))


def recover_orphans(
    session: Session, queue: str, stale_before: datetime, max_attempts: int
) -> tuple[list[str], list[str]]:
    """Running jobs of `queue` whose worker stopped sending heartbeats: requeue, or fail
    after too many attempts, or finish as cancelled when a cancel was pending.

    Returns (requeued job ids, ended job ids). The caller enqueues the requeued ones.
    """
    stale = session.execute(
        select(Job.id, Job.attempts, Job.cancel_requested, Job.worker).where(
            Job.queue == queue, Job.status == RUNNING, Job.heartbeat_at < stale_before
        )
    ).all()
    requeued, ended = [], []
    for job_id, attempts, cancel_requested, worker in stale:
        if cancel_requested:
            new_status, reason = CANCELLED, None
        elif attempts >= max_attempts:
            new_status = FAILED
            reason = (
                f"The worker running this job stopped responding {attempts} times "
                "(killed, or out of host memory?). Try a smaller batch_size or model."
            )
        else:
            new_status, reason = QUEUED, None
        values: dict[str, Any] = {"status": new_status, "heartbeat_at": None}
        if new_status == QUEUED:
            values["worker"] = None
        else:
            values.update(finished_at=utcnow(), failure_reason=reason)
            values["failure_kind"] = "worker_lost" if reason else None
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == RUNNING, Job.heartbeat_at < stale_before)
            .values(**values)
        )
        if done.rowcount != 1:
            continue  # another worker got there first
        event: dict[str, Any] = {"status": new_status, "reason": f"worker {worker} lost"}
        if reason:
            event.update(failure_reason=reason, failure_kind="worker_lost")
        add_event(session, job_id, "state", event)
        (requeued if new_status == QUEUED else ended).append(job_id)
    return requeued, ended
