"""Response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from store.models import Job


class JobCreated(BaseModel):
    id: str
    status: str


class JobSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: str
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


class JobDetail(JobSummary):
    spec: dict[str, Any]
    result: dict[str, Any] | None


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
    status: str
    epochs: list[EpochMetric]
    compression: dict[str, Any] | None


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


class SessionIn(BaseModel):
    token: str


class Me(BaseModel):
    name: str


# Result keys repeated by GET /jobs/{id}/metrics (the full result is in GET /jobs/{id}).
COMPRESSION_KEYS = (
    "accuracy",
    "val_accuracy",
    "params",
    "flops",
    "latency_ms",
    "file_size_bytes",
    "ranks",
    "chosen",
    "factor",
    "device",
    "timings_s",
)


def job_detail(job: Job) -> JobDetail:
    return JobDetail.model_validate(job)


def compression_summary(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result:
        return None
    return {key: result[key] for key in COMPRESSION_KEYS if key in result}
