"""The event stream of a job that waits in the queue: keep-alives, then the end."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store import jobs as repo
from store.db import session_scope
from store.models import FINAL_STATES, Job

from .conftest import QUICK_SPEC, Api

pytestmark = pytest.mark.service


def test_idle_stream_sends_keepalives_and_ends_when_the_job_does(settings, alice):
    unserved = settings.model_copy(update={"queue_name": f"{settings.queue_name}-nobody"})
    with TestClient(create_app(unserved)) as client:
        api = Api(client, alice.token)
        job_id = api.submit(QUICK_SPEC)

        def cancel_later() -> None:
            with session_scope(settings) as session:
                repo.request_cancel(session, session.get(Job, job_id))

        timer = threading.Timer(2.5, cancel_later)
        timer.start()
        lines: list[str] = []
        with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=api.headers) as r:
            assert r.headers["cache-control"] == "no-cache"
            lines.extend(r.iter_lines())
        timer.join()

    assert lines[0] == "retry: 2000"
    assert ": keep-alive" in lines  # SSE_HEARTBEAT_S is 1 s in these tests
    assert "event: end" in lines and 'data: {"status": "cancelled"}' in lines
    events = [line for line in lines if line.startswith('data: {"type"')]
    assert events == [
        'data: {"type": "state", "status": "queued"}',
        'data: {"type": "state", "status": "cancelled"}',
    ]


def test_list_pagination(settings, alice):
    unserved = settings.model_copy(update={"queue_name": f"{settings.queue_name}-nobody"})
    with TestClient(create_app(unserved)) as client:
        api = Api(client, alice.token)
        ids = [api.submit(QUICK_SPEC) for _ in range(3)]
        page = api.get("/jobs", params={"status": "queued", "limit": 2}).json()
        assert page["total"] >= 3 and len(page["items"]) == 2
        rest = api.get("/jobs", params={"status": "queued", "limit": 2, "offset": 2}).json()
        seen = [j["id"] for j in page["items"] + rest["items"]]
        assert set(ids) <= set(seen) and len(seen) == len(set(seen))
        for job_id in ids:
            assert api.delete(f"/jobs/{job_id}").status_code == 204
        assert api.get(f"/jobs/{ids[0]}/events").status_code == 404


def test_a_job_that_finishes_between_the_stream_reads_still_sends_its_last_state(settings, alice):
    # The race that once ended a stream without "succeeded": the worker commits the final
    # status (with its state event) while the stream is between its two reads. Made
    # certain here by committing it right after the stream's first statement.
    from sqlalchemy import event

    from api.routes.events import _read_new

    unserved = settings.model_copy(update={"queue_name": f"{settings.queue_name}-nobody"})
    with TestClient(create_app(unserved)) as client:
        job_id = Api(client, alice.token).submit(QUICK_SPEC)
    with session_scope(settings) as session:
        assert repo.claim_job(session, job_id, "race-worker")
        seen = max(row.id for row in repo.events_after(session, job_id, 0))

    def finish_now(*_args) -> None:
        if not finished:
            finished.append(True)
            with session_scope(settings) as other:
                assert repo.finish_job(other, job_id, "race-worker", "succeeded")

    finished: list[bool] = []
    sent: list[str] = []
    with session_scope(settings) as session:
        event.listen(session.connection(), "after_cursor_execute", finish_now)
        events, status = _read_new(job_id, seen)(session)
    assert finished  # the job did finish between the reads
    # The stream's own rule: poll until a read finds the job final and nothing new.
    while events or status not in FINAL_STATES:
        sent += [e["data"]["status"] for e in events if e["type"] == "state"]
        seen = max([seen, *(e["id"] for e in events)])
        with session_scope(settings) as session:
            events, status = _read_new(job_id, seen)(session)
    assert sent == ["succeeded"]
