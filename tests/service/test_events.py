"""The event stream of a job that waits in the queue: keep-alives, then the end."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store import jobs as repo
from store.db import session_scope
from store.models import Job

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
