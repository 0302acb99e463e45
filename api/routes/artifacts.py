"""Artifacts of a finished job: list and download (owner only)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, StreamingResponse

from api.bundle import zip_stream
from api.deps import OwnedJob, SettingsDep
from api.errors import not_found
from api.openapi import error
from api.schemas import Artifact
from store.artifacts import artifact_store
from store.models import SUCCEEDED

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
    "/{job_id}/artifacts.zip",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "every artifact in one zip, inside a folder named after the job",
        },
        404: error("No such job, or its artifacts were removed"),
        409: error("The job has not succeeded, so it has no artifacts"),
    },
)
def download_bundle(job: OwnedJob, settings: SettingsDep):
    """All the job's artifacts (models, report, MODEL_CARD.md) as one zip file.

    Unpacked, the folder loads with `lorita.load_lowrank(folder)`.
    """
    store = artifact_store(settings)
    items = store.list(job.id)
    if not items:
        if job.status != SUCCEEDED:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"job is {job.status}; artifacts exist once it has succeeded",
            )
        raise not_found("artifacts")
    folder = f"lorita-{job.id}"
    files = [(info.name, store.path(job.id, info.name)) for info in items]
    return StreamingResponse(
        zip_stream(files, folder),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{folder}.zip"'},
    )


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
