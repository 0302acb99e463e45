"""Tokens: required everywhere but /healthz and the docs, stored hashed, scoped per user."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from store import jobs as repo
from store.artifacts import artifact_store
from store.db import session_scope
from store.models import ApiToken, User

from .conftest import QUICK_SPEC

pytestmark = pytest.mark.service


def stored_job(settings, api, with_artifacts: bool = True) -> str:
    """A finished job of `api`'s user, written directly (no worker needed)."""
    with session_scope(settings) as session:
        user_id = session.scalar(
            select(ApiToken.user_id).where(
                ApiToken.token_hash == hashlib.sha256(api.token.encode()).hexdigest()
            )
        )
        spec = {**QUICK_SPEC, "lorita": {"factor": 2}}
        job_id = repo.create_job(session, user_id, spec, queue="unserved").id
    if with_artifacts:
        folder = settings.state_dir / f"fake-{job_id}"
        folder.mkdir()
        (folder / "report.json").write_text('{"accuracy": {"compressed": 0.5}}')
        (folder / "lowrank.safetensors").write_bytes(b"\0" * 16)
        artifact_store(settings).put_dir(job_id, folder)
    return job_id


def test_routes_need_a_token(client, settings):
    for method, path in [
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/x"),
        ("GET", "/api/v1/jobs/x/events"),
        ("GET", "/api/v1/jobs/x/artifacts/report.json"),
        ("GET", "/api/v1/datasets"),
        ("POST", "/api/v1/datasets"),
        ("GET", "/api/v1/me"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["detail"]
    wrong = client.get("/api/v1/jobs", headers={"Authorization": "Bearer lrt_not-a-token"})
    assert wrong.status_code == 401


def test_health_and_docs_are_public(client):
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert client.get("/api/v1/healthz").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/jobs" in paths and "/api/v1/jobs/{job_id}/events" in paths


def test_tokens_are_stored_hashed(settings, alice):
    with session_scope(settings) as session:
        rows = session.execute(select(ApiToken.token_hash, ApiToken.prefix, ApiToken.name)).all()
    assert rows
    hashes = {row.token_hash for row in rows}
    assert hashlib.sha256(alice.token.encode()).hexdigest() in hashes
    for row in rows:
        assert alice.token not in (row.token_hash, row.name)
        assert len(row.token_hash) == 64 and len(row.prefix) < len(alice.token)


def test_other_users_job_and_artifacts_are_404(settings, alice, bob):
    job_id = stored_job(settings, alice)
    assert alice.get(f"/jobs/{job_id}").status_code == 200
    names = [a["name"] for a in alice.get(f"/jobs/{job_id}/artifacts").json()]
    assert names == ["lowrank.safetensors", "report.json"]
    assert alice.get(f"/jobs/{job_id}/artifacts/report.json").json() == {
        "accuracy": {"compressed": 0.5}
    }

    for path in [
        f"/jobs/{job_id}",
        f"/jobs/{job_id}/metrics",
        f"/jobs/{job_id}/events",
        f"/jobs/{job_id}/artifacts",
        f"/jobs/{job_id}/artifacts/report.json",
    ]:
        assert bob.get(path).status_code == 404, path
    assert bob.post(f"/jobs/{job_id}/cancel").status_code == 404
    assert bob.post(f"/jobs/{job_id}/retry").status_code == 404
    assert bob.delete(f"/jobs/{job_id}").status_code == 404
    assert job_id not in {job["id"] for job in bob.get("/jobs").json()["items"]}
    # Still there for its owner.
    assert alice.get(f"/jobs/{job_id}").json()["status"] == "queued"
    # Unknown names never reach the file system.
    assert alice.get(f"/jobs/{job_id}/artifacts/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_browser_session_cookie(client, settings, alice):
    client.cookies.clear()
    assert client.post("/api/v1/session", json={"token": "wrong"}).status_code == 401
    signed_in = client.post("/api/v1/session", json={"token": alice.token})
    assert signed_in.status_code == 200
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get("/api/v1/me").json()["name"] == signed_in.json()["name"]
    assert client.delete("/api/v1/session").status_code == 204
    client.cookies.clear()
    assert client.get("/api/v1/me").status_code == 401

    # A sign-in link never signs in by itself (login CSRF): it leads to the sign-in
    # page with the token in the fragment, which asks before it POSTs.
    login = client.get(f"/login?token={alice.token}", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == f"/signin#token={alice.token}"
    assert "set-cookie" not in login.headers
    assert client.get("/api/v1/jobs").status_code == 401


def test_token_cli_prints_a_working_token(settings, client, capsys):
    from store.tokens import create_token_cli

    token = create_token_cli("carol", settings)
    assert capsys.readouterr().out.strip() == token
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json() == {"name": "carol"}
    with session_scope(settings) as session:
        assert session.scalar(select(User.id).where(User.name == "carol")) is not None
