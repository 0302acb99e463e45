"""Fixtures for the service tests: a fresh PostgreSQL database, a Redis key space
and queue of their own, real Celery worker processes, and the API in-process.

PostgreSQL (postgres@127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) must
be running; the tests stop with a clear message when they are not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from api.serve import settings_env
from store.db import dispose_engines, session_scope
from store.settings import Settings
from store.tokens import create_token

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("LORITA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LORITA_TEST_REDIS", "redis://127.0.0.1:6379/0")
FINAL = ("succeeded", "failed", "cancelled")

# A job small enough for two CPU cores: the paper's FCN on the 8x8 digits.
QUICK_SPEC = {
    "model": {"arch": "fcn"},
    "data": {"dataset": "digits", "train_subset": 300},
    "train": {"epochs": 1},
    # A fixed kept share instead of the accuracy search: the same path, fewer evaluations.
    "compress": {"strategy": "uniform", "keep_fraction": 0.5},
}


# --- servers -------------------------------------------------------------------------


def _sqlalchemy_url(db_name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{db_name}"


@pytest.fixture(scope="session")
def postgres_admin() -> Callable[[str], None]:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as error:
        pytest.exit(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {error}", returncode=3)

    def execute(sql: str) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(sql)

    return execute


@pytest.fixture(scope="session")
def make_database(postgres_admin) -> Iterator[Callable[[], str]]:
    """Creates empty databases lorita_test_<random>; all are dropped at the end."""
    created: list[str] = []

    def make() -> str:
        name = f"lorita_test_{uuid.uuid4().hex[:10]}"
        postgres_admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _sqlalchemy_url(name)

    yield make
    dispose_engines()
    for name in created:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.exit(f"Redis is not reachable at {REDIS_URL}: {error}", returncode=3)
    prefix = f"lorita_test_{uuid.uuid4().hex[:10]}:"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def run_alembic(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def settings(tmp_path_factory, make_database, redis_prefix) -> Settings:
    """Deployment-mode settings: PostgreSQL + Redis, migrated with the alembic CLI."""
    url = make_database()
    migrated = run_alembic(url, "upgrade", "head")
    assert migrated.returncode == 0, migrated.stderr
    state = tmp_path_factory.mktemp("state")
    return Settings(
        state_dir=state,
        database_url=url,
        broker_url=REDIS_URL,
        broker_key_prefix=redis_prefix,
        queue_name=f"{redis_prefix}jobs",
        artifact_dir=state / "artifacts",
        dataset_dir=state / "datasets",
        auto_migrate=False,
        worker_device="cpu",
        # Short, so a killed worker's job is noticed within seconds.
        job_heartbeat_s=1.0,
        job_stale_after_s=5.0,
        sse_heartbeat_s=1.0,
    )


# --- workers -------------------------------------------------------------------------


class WorkerProcess:
    """`python -m worker.main` with the test settings, its output in a log file."""

    def __init__(self, settings: Settings, log_path: Path):
        self.log_path = log_path
        env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        env.pop("LORITA_PARENT_PID", None)
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.main", "--loglevel", "INFO"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def start_worker(tmp_path_factory) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(settings: Settings, wait: bool = True) -> WorkerProcess:
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        worker = WorkerProcess(settings, log)
        started.append(worker)
        return worker.wait_ready() if wait else worker

    yield start
    for worker in started:  # all at once: each warm shutdown takes a few seconds
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def worker(settings, start_worker) -> WorkerProcess:
    """One worker serving the session's queue."""
    return start_worker(settings)


# --- API -----------------------------------------------------------------------------


class Api:
    """The in-process API with one user's token, and the waits tests need."""

    def __init__(self, client: TestClient, token: str):
        self.client = client
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs):
        merged = {**self.headers, **(headers or {})}
        return self.client.request(method, f"/api/v1{path}", headers=merged, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def submit(self, spec: dict) -> str:
        response = self.post("/jobs", json=spec)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "queued"
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(
        self, job_id: str, done: Callable[[dict], bool], timeout: float = 120, what: str = ""
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if done(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or 'job'}: {job}")
            time.sleep(0.2)

    def wait_final(self, job_id: str, timeout: float = 120) -> dict:
        return self.wait_for(job_id, lambda j: j["status"] in FINAL, timeout, "a final state")

    def events(self, job_id: str, last_event_id: int | None = None) -> list[dict]:
        """Read the whole event stream (it ends when the job is final); the closing
        `end` event is checked and left out."""
        headers = dict(self.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        events = read_sse(self.client, f"/api/v1/jobs/{job_id}/events", headers)
        assert events and events[-1]["event"] == "end", events[-1:]
        return events[:-1]


def read_sse(client, url: str, headers: dict) -> list[dict]:
    events, current = [], {}
    with client.stream("GET", url, headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "data" in current:
                    current["data"] = json.loads(current["data"])
                    events.append(current)
                current = {}
            elif not line.startswith(":") and ":" in line:
                key, _, value = line.partition(":")
                current[key] = value.strip()
    return events


def make_user_token(settings: Settings, name: str) -> str:
    with session_scope(settings) as session:
        return create_token(session, f"{name}-test", user_name=name)


@pytest.fixture(scope="session")
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def alice(client, settings) -> Api:
    return Api(client, make_user_token(settings, f"alice-{uuid.uuid4().hex[:6]}"))


@pytest.fixture(scope="session")
def bob(client, settings) -> Api:
    return Api(client, make_user_token(settings, f"bob-{uuid.uuid4().hex[:6]}"))
