"""Artifacts of a finished job: list and download (owner only)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.errors import not_found
from api.routes.jobs import owned_job
from api.schemas import Artifact
from store.artifacts import artifact_store

router = APIRouter(prefix="/jobs", tags=["artifacts"])

CHUNK = 1024 * 1024


@router.get("/{job_id}/artifacts", response_model=list[Artifact])
def list_artifacts(job_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep):
    """Files of the job's export (empty until the job succeeded)."""
    job = owned_job(session, job_id, user)
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
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}, "application/json": {}}}},
)
def download_artifact(
    job_id: str, name: str, session: SessionDep, user: CurrentUser, settings: SettingsDep
):
    job = owned_job(session, job_id, user)
    store = artifact_store(settings)
    info = next((item for item in store.list(job.id) if item.name == name), None)
    if info is None:
        raise not_found("artifact")
    handle = store.open(job.id, name)

    def chunks():
        with handle:
            while block := handle.read(CHUNK):
                yield block

    return StreamingResponse(
        chunks(),
        media_type=info.content_type,
        headers={
            "Content-Length": str(info.size_bytes),
            "Content-Disposition": f'attachment; filename="{info.name}"',
        },
    )
