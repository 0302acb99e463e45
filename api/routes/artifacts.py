"""Artifacts of a finished job: list and download (owner only)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import OwnedJob, SettingsDep
from api.errors import not_found
from api.schemas import Artifact
from store.artifacts import artifact_store

router = APIRouter(prefix="/jobs", tags=["artifacts"])


@router.get("/{job_id}/artifacts", response_model=list[Artifact])
def list_artifacts(job: OwnedJob, settings: SettingsDep):
    """Files of the job's export (empty until the job succeeded)."""
    return [
        Artifact(
            name=info.name,
            size_bytes=info.size_bytes,
            content_type=info.content_type,
            url=f"/api/v1/jobs/{job.id}/artifacts/{info.name}",
        )
        for info in artifact_store(settings).list(job.id)
    ]


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}, "application/json": {}}}},
)
def download_artifact(job: OwnedJob, name: str, settings: SettingsDep):
    """One file; resumable (Range requests) and cacheable (ETag, Last-Modified)."""
    store = artifact_store(settings)
    info = next((item for item in store.list(job.id) if item.name == name), None)
    if info is None:
        raise not_found("artifact")
    return FileResponse(store.path(job.id, name), media_type=info.content_type, filename=info.name)
