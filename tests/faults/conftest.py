"""Fault tests run on a PostgreSQL and a Redis of their own, started here on free
ports in temporary folders, so stopping and restarting them harms nothing else.

PostgreSQL comes from the installed server binaries (initdb, pg_ctl); as root they
run as the `postgres` user, which initdb requires. Redis is `redis-server` with an
append-only file, so a restart keeps the queue as a deployment's Redis does.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from service.conftest import run_alembic

from store.db import dispose_engines
from store.settings import Settings

PG_BIN_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_binary(name: str) -> str | None:
    for folder in PG_BIN_DIRS:
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return shutil.which(name)


class Postgres:
    """A throwaway PostgreSQL cluster: start, stop (fast shutdown), start again."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="lorita-faults-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        initdb = pg_binary("initdb")
        self._run(initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, *argv) -> None:
        done = subprocess.run(
            [*self.as_user, *map(str, argv)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -F"
        log = self.folder / "server.log"
        self._run(pg_binary("pg_ctl"), "-D", self.data, "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run(pg_binary("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")

    def create_database(self) -> str:
        name = f"lorita_faults_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        with contextlib.suppress(AssertionError):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Redis:
    """A throwaway redis-server; restart() stops it (SIGTERM or SIGKILL) and starts it
    again on the same port with the same append-only file."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="lorita-faults-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--protected-mode", "no",
            ],
            stdout=open(self.folder / "server.log", "a"),  # noqa: SIM115 (kept by the process)
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=20)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2)

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not pg_binary("initdb") or not pg_binary("pg_ctl"):
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = Postgres()
    server.start()
    yield server
    dispose_engines()
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = Redis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def fault_settings(postgres, redis_server, tmp_path) -> Settings:
    """A fresh database and queue per test on the tests' own servers."""
    url = postgres.create_database()
    migrated = run_alembic(url, "upgrade", "head")
    assert migrated.returncode == 0, migrated.stderr
    prefix = f"faults_{uuid.uuid4().hex[:8]}:"
    return Settings(
        state_dir=tmp_path / "state",
        database_url=url,
        broker_url=redis_server.url,
        broker_key_prefix=prefix,
        queue_name=f"{prefix}jobs",
        artifact_dir=tmp_path / "state" / "artifacts",
        dataset_dir=tmp_path / "state" / "datasets",
        auto_migrate=False,
        worker_device="cpu",
        job_heartbeat_s=1.0,
        job_stale_after_s=5.0,
        job_max_attempts=6,
        sse_heartbeat_s=1.0,
        # Long: a lost worker's message must be dealt with long before Redis redelivers it.
        broker_visibility_timeout_s=3600,
    )
