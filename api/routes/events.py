"""Server-sent events of a job: every stored event in order, then the end.

Each event carries its database id (`id:` line), so a client that reconnects
with Last-Event-ID (EventSource does this by itself) continues where it left
off. The stream ends once the job is final and every event was sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import OwnedJob, SettingsDep
from store import jobs as repo
from store.db import session_scope
from store.models import FINAL_STATES, Job
from store.settings import Settings

router = APIRouter(prefix="/jobs", tags=["jobs"])

POLL_S = 0.5
RECONNECT_MS = 2000


def _read_new(settings: Settings, job_id: str, after: int) -> tuple[list[dict], str | None]:
    with session_scope(settings) as session:
        rows = repo.events_after(session, job_id, after)
        job = session.get(Job, job_id)
        status = job.status if job else None
        return (
            [{"id": row.id, "type": row.type, "data": row.data} for row in rows],
            status,
        )


def format_event(event_id: int, event_type: str, data: dict) -> str:
    payload = json.dumps({"type": event_type, **data} if "type" not in data else data)
    return f"id: {event_id}\nevent: {event_type}\ndata: {payload}\n\n"


async def event_stream(
    request: Request, settings: Settings, job_id: str, after: int
) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n\n"
    last_sent = time.monotonic()
    while True:
        events, status = await run_in_threadpool(_read_new, settings, job_id, after)
        for event in events:
            after = event["id"]
            yield format_event(event["id"], event["type"], event["data"])
            last_sent = time.monotonic()
        if status is None:  # deleted meanwhile
            yield 'event: end\ndata: {"status": "deleted"}\n\n'
            return
        if not events and status in FINAL_STATES:
            yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
            return
        if events:
            continue  # more may be waiting (batches of 500)
        if await request.is_disconnected():
            return
        if time.monotonic() - last_sent >= settings.sse_heartbeat_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_S)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Event stream"}},
)
def job_events(
    job: OwnedJob,
    request: Request,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this event id")] = None,
):
    """Stream the job's events (stage, epoch, progress, state) as server-sent events."""
    start = after or 0
    if last_event_id and last_event_id.strip().isdigit():
        start = int(last_event_id.strip())
    return StreamingResponse(
        event_stream(request, settings, job.id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
