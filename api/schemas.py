"""Response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.result import BeforeAfter, Result, ResultMetrics, ResultSummary, ResultWarning
from store.models import Job, JobStatus


class JobCreated(BaseModel):
    id: str
    status: JobStatus


class JobSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: JobStatus
    arch: str
    dataset: str
    progress: float
    stage: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    failure_reason: str | None
    failure_kind: str | None
    retry_of: str | None
    # What a list row shows besides the columns, so a list needs no request per job.
    factor: int | None = Field(None, description="LoRITa factor N of the spec")
    baseline: bool = Field(False, description="an N=1 baseline is trained too")
    summary: ResultSummary | None = Field(
        None, description="accuracy, params and FLOPs before/after, once succeeded"
    )
    baseline_accuracy: BeforeAfter | None = Field(
        None,
        description="test accuracy of the plain N=1 model (uncompressed/compressed), "
        "when the job trained one",
    )
    warnings: list[ResultWarning] | None = Field(
        None, description="the result's warnings ({kind, message, advice}), once succeeded"
    )

    @model_validator(mode="before")
    @classmethod
    def _read_job(cls, data: Any) -> Any:
        """From a Job row: its columns, plus the list fields read from spec and result."""
        if not isinstance(data, Job):
            return data
        row = {name: getattr(data, name) for name in cls.model_fields if hasattr(data, name)}
        spec = data.spec or {}
        row["factor"] = (spec.get("lorita") or {}).get("factor")
        row["baseline"] = bool(spec.get("baseline"))
        row["summary"] = result_summary(data.result)
        row["baseline_accuracy"] = _baseline_accuracy(data.result)
        row["warnings"] = _warnings(data.result)
        return row


def _baseline_accuracy(result: dict[str, Any] | None) -> BeforeAfter | None:
    accuracy = ((result or {}).get("baseline") or {}).get("accuracy")
    try:
        return BeforeAfter.model_validate(accuracy) if accuracy else None
    except ValidationError:
        return None


def _warnings(result: dict[str, Any] | None) -> list[ResultWarning] | None:
    warnings = (result or {}).get("warnings")
    if not isinstance(warnings, list):
        return None
    readable = []
    for warning in warnings:  # one odd entry must not break the whole list
        try:
            readable.append(ResultWarning.model_validate(warning))
        except ValidationError:
            continue
    return readable


def result_summary(result: dict[str, Any] | None) -> ResultSummary | None:
    """The list numbers of a stored result; None before success or for a result that
    lacks them (one odd row must not break the whole list)."""
    if not result:
        return None
    try:
        return ResultSummary.model_validate(result)
    except ValidationError:
        return None


class JobDetail(JobSummary):
    spec: dict[str, Any]
    result: Result | None


class JobList(BaseModel):
    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class EpochMetric(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    run: str
    epoch: int
    epochs: int | None
    train_loss: float | None
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    lr: float | None
    epoch_time_s: float | None
    created_at: datetime


class JobMetrics(BaseModel):
    job_id: str
    status: JobStatus
    epochs: list[EpochMetric]
    compression: ResultMetrics | None


class Artifact(BaseModel):
    name: str
    size_bytes: int
    content_type: str
    url: str


class DatasetOut(BaseModel):
    id: str
    reference: str
    name: str
    builtin: bool
    kind: str | None = None
    filename: str | None = None
    size_bytes: int | None = None
    info: dict[str, Any] | None = None
    created_at: datetime | None = None
    present: bool | None = Field(
        None,
        description="built-ins: whether this server's data folder already holds the set "
        "(a missing one is fetched when a job first needs it)",
    )
    source: str | None = Field(
        None, description="built-ins: where the set comes from when it is missing"
    )


class SessionIn(BaseModel):
    token: str


class Me(BaseModel):
    name: str


def job_summary(job: Job) -> JobSummary:
    return JobSummary.model_validate(job)


def job_detail(job: Job) -> JobDetail:
    return JobDetail.model_validate(job)


def compression_summary(result: dict[str, Any] | None) -> ResultMetrics | None:
    """The stored result's numbers that GET /jobs/{id}/metrics repeats (the full result
    is in GET /jobs/{id})."""
    if not result:
        return None
    return ResultMetrics.model_validate(result)
