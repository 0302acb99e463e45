"""The compose topology as plain processes: migrate, API, two workers, real jobs.

Run with `pytest tests/deploy/test_stack.py -s` to watch the transcript; it is also
written to test-output/stack_transcript.txt and each process's log to
test-output/stack-logs/.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from deployfiles import REPO
from sqlalchemy.engine import make_url
from stack_harness import (
    TRANSCRIPT_FILE,
    ComposeCommands,
    Stack,
    Transcript,
    free_port,
    replace_option,
    unique_name,
)

from tests.local_state import service_env

# docker/check holds the compose check's scripts, not a package: read job events with
# the same module its check does.
sys.path.append(str(REPO / "docker" / "check"))
from job_events import Timeline, parse_events, timeline  # noqa: E402

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.timeout(300)]

POSTGRES_URL = os.environ.get(
    "LORITA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
).replace("postgresql://", "postgresql+psycopg://", 1)
# Its own Redis database index (and key prefix and queue) beside other tests.
REDIS_URL = (
    os.environ.get("LORITA_TEST_REDIS", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/14"
)
WORKERS = ("worker-a", "worker-b")
SHORT_JOB = {
    "model": {"arch": "fcn"},
    "data": {"dataset": "digits"},
    "lorita": {"factor": 2},
    "train": {"epochs": 2},
}
# Long enough to be stopped mid-training even on a fast, idle machine (tens of seconds).
LONG_JOB = {**SHORT_JOB, "train": {"epochs": 40, "batch_size": 16}}
STOP_AFTER_EPOCH = 3
GRACE_PERIOD_S = 120  # docker-compose.yml: the worker's stop_grace_period


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database (compose: the `postgres` service); its SQLAlchemy URL."""
    admin = make_url(POSTGRES_URL).set(drivername="postgresql")
    name = unique_name("lorita_stack")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(POSTGRES_URL)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def broker() -> Iterator[tuple[str, str]]:
    """(broker URL, key prefix) on the Redis server (compose: the `redis` service)."""
    prefix = unique_name("stack") + ":"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    try:
        yield REDIS_URL, prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


@pytest.fixture
def transcript() -> Iterator[Transcript]:
    say = Transcript(TRANSCRIPT_FILE)
    yield say
    say.close()


@pytest.fixture
def stack(database, broker, transcript, tmp_path: Path) -> Iterator[Stack]:
    broker_url, prefix = broker
    volumes = tmp_path / "volumes"  # the named volumes, shared like in compose
    env = service_env(
        volumes,
        DATABASE_URL=database,
        BROKER_URL=broker_url,
        BROKER_KEY_PREFIX=prefix,
        QUEUE_NAME=prefix.rstrip(":"),
        GPU_LOCK_DIR=str(volumes / "gpu-locks"),
        WORKER_DEVICE="auto",
        AUTO_MIGRATE="false",
        LOG_LEVEL="INFO",
        # As in the images (PATH=/opt/venv/bin:$PATH): `python` is the project's.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    # Nothing else from the caller's shell may leak into the "containers": nor the GPUs
    # it picked (each worker takes its slot through docker/gpu_slot.py).
    env = {key: value for key, value in env.items() if not key.startswith("CUDA_")}
    running = Stack(env=env, say=transcript)
    safe_db = make_url(database).render_as_string(hide_password=True)
    transcript(f"postgres: fresh database {safe_db}")
    transcript(f"redis: {broker_url} key prefix {prefix!r}, queue {env['QUEUE_NAME']!r}")
    try:
        yield running
    finally:
        running.close()


def api_client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def create_token(database_url: str, state_dir: str) -> str:
    """`lorita token create` against the deployment's database."""
    from store.db import dispose_engines, session_scope
    from store.settings import Settings
    from store.tokens import create_token as create

    settings = Settings(database_url=database_url, state_dir=Path(state_dir))
    with session_scope(settings) as session:
        token = create(session, "stack-test")
    dispose_engines()
    return token


class JobWatch:
    """Polls jobs over HTTP and writes each change of state or worker to the transcript."""

    def __init__(self, client: httpx.Client, say: Transcript) -> None:
        self.client, self.say = client, say
        self.names: dict[str, str] = {}
        self.latest: dict[str, dict] = {}
        self.history: dict[str, list[tuple[str, str | None]]] = {}

    def submit(self, name: str, spec: dict) -> str:
        response = self.client.post("/jobs", json=spec)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        self.names[job_id] = name
        self.history[job_id] = []
        self.say(f"{name}: submitted job {job_id} ({json.dumps(spec['train'])})")
        self.poll()
        return job_id

    def poll(self) -> None:
        for job_id, name in self.names.items():
            job = self.client.get(f"/jobs/{job_id}").raise_for_status().json()
            self.latest[job_id] = job
            state = (job["status"], job["worker"])
            if not self.history[job_id] or self.history[job_id][-1] != state:
                self.history[job_id].append(state)
                where = f" on {job['worker']}" if job["worker"] else ""
                extra = f" (attempt {job['attempts']})" if job["status"] == "running" else ""
                reason = f": {job['failure_reason']}" if job["failure_reason"] else ""
                self.say(f"{name}: {job_id} {job['status']}{where}{extra}{reason}")

    def wait(self, job_ids: list[str], done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if all(done(self.latest[job_id]) for job_id in job_ids):
                return
            time.sleep(0.25)
        raise AssertionError(f"jobs not done in {timeout:g}s: {[self.latest[j] for j in job_ids]}")


def timeline_of(client: httpx.Client, job_id: str) -> Timeline:
    """What a finished job's server-sent event stream says happened."""
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        response.raise_for_status()
        return timeline(parse_events(response.iter_lines()))


def test_compose_topology_runs_jobs_across_workers_and_survives_a_graceful_stop(stack: Stack):
    say = stack.say
    commands = ComposeCommands.read()

    # migrate: `alembic upgrade head` once; everything else starts after it succeeded.
    migrated = stack.run_once("migrate", commands.migrate, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    say(f"migrate: exit {migrated.returncode}")

    # api: the image's uvicorn command on a free port; ready when /healthz says so.
    port = free_port()
    api_argv = replace_option(
        replace_option(commands.api, "--host", "127.0.0.1"), "--port", str(port)
    )
    stack.start("api", api_argv)
    # workers: two replicas (docker compose up --scale worker=2), distinct hostnames.
    for name in WORKERS:
        argv = replace_option(commands.worker, "--hostname", f"{name}@%h")
        stack.start(name, argv)

    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    health = None
    while time.monotonic() < deadline:
        try:
            health = httpx.get(base_url + "/healthz", timeout=5)
            if health.status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert stack.processes["api"].poll() is None, stack.log_text("api")
        time.sleep(0.3)
    assert health is not None and health.status_code == 200, stack.log_text("api")
    say(f"api: GET /healthz -> {health.status_code} {health.json()}")
    for name in WORKERS:
        stack.wait_for_log(name, " ready.", timeout=90)
        say(f"{name}: ready (celery worker consuming queue {stack.env['QUEUE_NAME']!r})")
    # The compose healthcheck of a worker container.
    checked = stack.run_once("worker healthcheck", commands.worker_healthcheck, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    say(f"worker healthcheck: {checked.stdout.strip()}")

    token = create_token(stack.env["DATABASE_URL"], stack.env["STATE_DIR"])
    say("token: created for user stack-test (store.tokens)")
    with api_client(base_url, token) as client:
        watch = JobWatch(client, say)

        # Three short jobs: both workers take some, one job at a time each.
        short = [watch.submit(f"job{i}", SHORT_JOB) for i in (1, 2, 3)]
        watch.wait(short, lambda job: job["status"] in ("succeeded", "failed"), timeout=150)
        timelines = {}
        for job_id in short:
            job = watch.latest[job_id]
            assert job["status"] == "succeeded", job
            timelines[job_id] = timeline_of(client, job_id)
            assert timelines[job_id].states == ["queued", "running", "succeeded"]
            assert timelines[job_id].workers == [job["worker"]]
        used = {watch.latest[job_id]["worker"].split("@")[0] for job_id in short}
        assert used == set(WORKERS), f"jobs were not spread over both workers: {used}"
        assert_one_job_at_a_time(watch, short)

        # A longer job: stop its worker gracefully (SIGTERM, as `docker compose stop`)
        # mid-training; the job goes back to the queue and the other worker resumes it.
        long_job = watch.submit("job4", LONG_JOB)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            watch.poll()
            metrics = client.get(f"/jobs/{long_job}/metrics").raise_for_status().json()
            if len(metrics["epochs"]) >= STOP_AFTER_EPOCH:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"job4 never reached epoch {STOP_AFTER_EPOCH}")
        first_worker = watch.latest[long_job]["worker"]
        victim = first_worker.split("@")[0]
        say(f"job4: epoch {len(metrics['epochs'])} done on {first_worker}; SIGTERM to {victim}")
        stopping = time.monotonic()
        exit_code = stack.stop(victim, signal.SIGTERM, timeout=GRACE_PERIOD_S)
        say(f"{victim}: exited with code {exit_code} after {time.monotonic() - stopping:.1f}s")
        assert exit_code == 0, stack.log_text(victim)
        assert "requeued for another worker" in stack.log_text(victim)

        watch.wait([long_job], lambda job: job["status"] in ("succeeded", "failed"), timeout=150)
        job = watch.latest[long_job]
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 2, job
        timelines[long_job] = stopped = timeline_of(client, long_job)
        assert stopped.states == ["queued", "running", "queued", "running", "succeeded"]
        assert stopped.workers == [first_worker, job["worker"]] and job["worker"] != first_worker
        assert any("shutting down" in reason for reason in stopped.reasons), stopped.reasons
        resumed_at = assert_resumed_from_checkpoint(stopped, say)
        artifacts = client.get(f"/jobs/{long_job}/artifacts").raise_for_status().json()
        names = sorted(artifact["name"] for artifact in artifacts)
        assert "lowrank.safetensors" in names and "report.json" in names
        say(f"job4: artifacts {', '.join(names)}")

        summary(watch, timelines, say, resumed_at)


def assert_one_job_at_a_time(watch: JobWatch, job_ids: list[str]) -> None:
    """No worker ran two of these jobs at overlapping times (concurrency 1, prefetch 1)."""
    by_worker: dict[str, list[tuple[str, str]]] = {}
    for job_id in job_ids:
        job = watch.latest[job_id]
        by_worker.setdefault(job["worker"], []).append((job["started_at"], job["finished_at"]))
    for worker, spans in by_worker.items():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            assert end <= start, f"{worker} ran two jobs at once: {spans}"


def assert_resumed_from_checkpoint(stopped: Timeline, say: Transcript) -> int:
    """The second attempt's training starts after the last epoch the first one finished."""
    assert sorted(stopped.epochs) == [1, 2], stopped.epochs
    first, second = stopped.epochs[1], stopped.epochs[2]
    say(f"job4: attempt 1 on {stopped.workers[0]} trained epochs {first}")
    say(f"job4: queued again: {stopped.reasons[-1]}")
    say(
        f"job4: attempt 2 on {stopped.workers[1]} trained epochs {second} "
        f"(resumed from the epoch-{first[-1]} checkpoint)"
    )
    assert first[0] == 1 and len(first) >= STOP_AFTER_EPOCH
    assert second[0] == first[-1] + 1, "the second attempt did not resume from the checkpoint"
    assert first + second == list(range(1, LONG_JOB["train"]["epochs"] + 1))
    return second[0]


def summary(
    watch: JobWatch, timelines: dict[str, Timeline], say: Transcript, resumed_at: int
) -> None:
    say("")
    say("Summary (from each job's event stream, GET /api/v1/jobs/{id}/events):")
    say(f"{'job':5} {'id':36} {'worker(s)':20} states")
    for job_id, name in watch.names.items():
        line = timelines[job_id]
        workers = " -> ".join(worker.split("@")[0] for worker in line.workers)
        say(f"{name:5} {job_id:36} {workers:20} {' -> '.join(line.states)}")
    say(f"job4 resumed at epoch {resumed_at} on the other worker after a graceful stop (SIGTERM)")
