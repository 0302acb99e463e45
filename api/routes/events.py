"""Server-sent events of a job: every stored event in order, then the end.

Each event carries its database id (`id:` line), so a client that reconnects
with Last-Event-ID (EventSource does this by itself) continues where it left
off. The stream ends once the job is final and every event was sent.

An open stream holds no session: each poll takes a database turn and a short
session (api.dbgate), so hundreds of streams share the pool with other requests.
While the database is unavailable the stream keeps its connection and polls on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.dbgate import DatabaseBusy, run_in_session
from api.deps import OwnedJob, SettingsDep
from api.errors import field_error
from store import jobs as repo
from store.models import FINAL_STATES, Job
from store.settings import Settings

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger("lorita.api")

POLL_S = 0.5
# Polls while the database is unavailable come less often.
OUTAGE_POLL_S = 2.0
RECONNECT_MS = 2000
# Event ids are 64-bit (bigint) columns.
MAX_EVENT_ID = 2**63 - 1
EVENT_ID = re.compile(r"[0-9]{1,19}")


def parse_last_event_id(value: str | None) -> int | None:
    """The Last-Event-ID header as an event id; 422 for anything but ASCII digits in the
    id range (`str.isdigit` accepts "²", which `int()` refuses)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not EVENT_ID.fullmatch(text) or int(text) > MAX_EVENT_ID:
        error = field_error([], f"Last-Event-ID must be an event id (0 to {MAX_EVENT_ID})")
        error.detail[0]["loc"] = ["header", "last-event-id"]
        raise error
    return int(text)


def _read_new(job_id: str, after: int) -> Any:
    def read(session: Session) -> tuple[list[dict], str | None]:
        # The status first: each statement sees what was committed when it ran, and the
        # worker commits the final status with its last event. Read the other way round,
        # a job finishing between the two reads looks final with no event left to send,
        # and the stream would end without the job's last state.
        job = session.get(Job, job_id)
        status = job.status if job else None
        rows = repo.events_after(session, job_id, after)
        return (
            [{"id": row.id, "type": row.type, "data": row.data} for row in rows],
            status,
        )

    return read


def format_event(event_id: int, event_type: str, data: dict) -> str:
    payload = json.dumps({"type": event_type, **data} if "type" not in data else data)
    return f"id: {event_id}\nevent: {event_type}\ndata: {payload}\n\n"


async def event_stream(
    request: Request, settings: Settings, job_id: str, after: int
) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n\n"
    last_sent = time.monotonic()
    while True:
        try:
            events, status = await run_in_session(
                request.app.state, settings, _read_new(job_id, after)
            )
        except (SQLAlchemyError, DatabaseBusy) as error:
            log.warning("event stream of job %s: database unavailable (%s)", job_id, error)
            if await request.is_disconnected():
                return
            yield ": database unavailable, retrying\n\n"
            last_sent = time.monotonic()
            await asyncio.sleep(OUTAGE_POLL_S)
            continue
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
async def job_events(
    job: OwnedJob,
    request: Request,
    settings: SettingsDep,
    last_event_id: Annotated[
        str | None,
        Header(description="Resume after this event id (sent by EventSource on reconnect)"),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id")
    ] = None,
):
    """Stream the job's events (stage, epoch, progress, state) as server-sent events."""
    resume = parse_last_event_id(last_event_id)
    start = resume if resume is not None else (after or 0)
    return StreamingResponse(
        event_stream(request, settings, job.id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
