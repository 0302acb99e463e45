"""Hostile input answered with 4xx instead of 500 (on PostgreSQL, which cannot store
NUL characters and overflows on huge integers), 405s that name every method, and
503 with Retry-After when the database is gone."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store.settings import Settings

from .conftest import QUICK_SPEC, make_user_token, read_sse

HUGE = "9223372036854775808"  # 2**63: one past the largest bigint


@pytest.fixture(scope="module")
def queued_job(alice, worker):
    # A job that is cancelled at once: it has events and a final state.
    job_id = alice.submit(QUICK_SPEC)
    alice.post(f"/jobs/{job_id}/cancel")
    alice.wait_final(job_id)
    return job_id


@pytest.mark.parametrize(
    "method, path, kwargs, loc",
    [
        ("GET", "/jobs/%00", {}, ["path"]),
        ("GET", "/jobs/abc%00def/events", {}, ["path"]),
        ("GET", "/jobs?arch=%00", {}, ["query", "arch"]),
        ("GET", "/jobs?dataset=x%00y", {}, ["query", "dataset"]),
        ("GET", "/datasets/%00", {}, ["path"]),
        (
            "POST",
            "/jobs",
            {"json": {**QUICK_SPEC, "data": {"dataset": "upload:\u0000"}}},
            ["body", "data", "dataset"],
        ),
        ("POST", "/jobs", {"json": {"model\u0000": {"arch": "fcn"}}}, ["body", "model\u0000"]),
        ("POST", "/session", {"json": {"token": "a\u0000b"}}, ["body", "token"]),
    ],
)
def test_nul_characters_are_refused(alice, method, path, kwargs, loc):
    response = alice.request(method, path, **kwargs)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize(
    "query", [f"offset={HUGE}", "offset=-1", "limit=100000", f"offset={2**31}"]
)
def test_out_of_range_paging_is_refused(alice, query):
    response = alice.get(f"/jobs?{query}")
    assert response.status_code == 422, response.text


def test_event_ids_out_of_range_are_refused(alice, queued_job):
    url = f"/api/v1/jobs/{queued_job}/events"
    # "²" as one Latin-1 byte (str.isdigit() says yes, int() refuses it) and as UTF-8.
    for header in (b"\xb2", "²".encode(), "12a", HUGE, "1" * 40, "-1", "\u0663".encode()):
        response = alice.client.get(url, headers={**alice.headers, "Last-Event-ID": header})
        assert response.status_code == 422, (header, response.text)
        assert response.json()["detail"][0]["loc"] == ["header", "last-event-id"]
    assert alice.get(f"/jobs/{queued_job}/events?after={HUGE}").status_code == 422
    # The largest id is valid: the stream has nothing after it and ends cleanly.
    events = read_sse(alice.client, f"{url}?after={2**63 - 1}", alice.headers)
    assert [event["event"] for event in events] == ["end"]
    events = read_sse(alice.client, url, {**alice.headers, "Last-Event-ID": str(2**63 - 1)})
    assert [event["event"] for event in events] == ["end"]


def test_oversized_json_body_is_413(alice):
    body = b'{"model": {"arch": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    response = alice.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_405_names_every_method_of_the_path(alice, queued_job):
    response = alice.request("PUT", f"/jobs/{queued_job}")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "DELETE"}
    response = alice.request("PATCH", "/jobs")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    response = alice.request("PUT", "/session")
    assert set(response.headers["allow"].split(", ")) >= {"POST", "DELETE"}


def test_database_outage_answers_503_with_retry_after(make_database, postgres_admin, settings):
    """The job database disappears under a running API (its server refuses it)."""
    from .conftest import run_alembic

    url = make_database()
    assert run_alembic(url, "upgrade", "head").returncode == 0
    outage = Settings(**{**settings.model_dump(), "database_url": url})
    token = make_user_token(outage, "olga")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(outage)) as client:
        assert client.get("/api/v1/jobs", headers=headers).status_code == 200
        name = url.rsplit("/", 1)[1]
        postgres_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres_admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        try:
            for method, path, kwargs in (
                ("GET", "/api/v1/jobs", {}),
                ("GET", "/api/v1/jobs/00000000-0000-0000-0000-000000000000", {}),
                ("POST", "/api/v1/jobs", {"json": QUICK_SPEC}),
                ("GET", "/api/v1/me", {}),
                ("GET", "/api/v1/datasets", {}),
            ):
                response = client.request(method, path, headers=headers, **kwargs)
                assert response.status_code == 503, (path, response.text)
                assert int(response.headers["retry-after"]) > 0
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["database"].startswith("error")
            assert health.json()["broker"] == "ok"
        finally:
            postgres_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        # Back: the same app answers again.
        assert client.get("/api/v1/jobs", headers=headers).status_code == 200
