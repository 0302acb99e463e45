"""Load on the request path: GET one job and the job list at rising concurrency, and
open event streams, against a real uvicorn server of the API.

Each client loops for a fixed time, alternating the measured route with the
trivial route of the same app (`/livez`: no token, no database), so both are
measured in the same run under the same load; the p99 ratio is the figure (it
says what the database path adds, whatever the machine). Loopback only; request
counts and durations are bounded.

    python -m bench.service_load                   # embedded SQLite, then PostgreSQL
    python -m bench.service_load --backend sqlite --seconds 3 --levels 10,50
    python -m bench.service_load --pg postgresql://postgres@127.0.0.1:5432/postgres

Results: bench/results/service_load.json (the README table is made from it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "service_load.json"
LEVELS = (10, 50, 100, 200, 500)
STREAMS = 200
TRIVIAL = "/livez"
JOBS_IN_LIST = 20
SPEC = {"model": {"arch": "fcn"}, "data": {"dataset": "digits"}, "train": {"epochs": 1}}
# Per-request bound: a locked-up server shows as errors, not as a hung benchmark.
REQUEST_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seed(env: dict[str, str], jobs: int = JOBS_IN_LIST) -> tuple[str, str]:
    """Migrate the database of `env`, create a user with a token and `jobs` queued jobs
    (no worker: they stay queued). Returns (token, id of one job)."""
    code = (
        "import json, sys\n"
        "from store.db import session_scope\n"
        "from store.migrate import ensure_schema\n"
        "from store.settings import Settings\n"
        "from store.tokens import create_token, get_or_create_user\n"
        "from store import jobs as repo\n"
        "settings = Settings()\n"
        "ensure_schema(settings)\n"
        "with session_scope(settings) as session:\n"
        "    token = create_token(session, 'load', user_name='load')\n"
        "    user = get_or_create_user(session, 'load')\n"
        f"    ids = [repo.create_job(session, user.id, {SPEC!r}, queue='load').id"
        f" for _ in range({jobs})]\n"
        "print(json.dumps([token, ids[0]]))\n"
    )
    token, job_id = json.loads(run_python(code, env, timeout=300))
    return token, job_id


def run_python(code: str, env: dict[str, str], timeout: float) -> str:
    """Run `code` in a fresh interpreter at the repository root with exactly `env` (so it
    reads the settings a server started with `env` reads) and return the last line it
    printed; a failure raises with what it wrote to stderr."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"python -c exited with {done.returncode}:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


class Server:
    """`uvicorn api.main:create_app --factory` in a child process on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                # uvicorn closes idle keep-alive connections after 5 s; under this load a
                # pooled client connection can sit that long, and a request sent as the
                # server closes it fails with a connection error that is no answer at all.
                "--timeout-keep-alive",
                "120",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(self.base + TRIVIAL, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def server_env(state_dir: Path, database_url: str = "") -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LORITA_")}
    for name in ("DATABASE_URL", "BROKER_URL", "ARTIFACT_DIR", "DATASET_DIR", "AUTO_MIGRATE"):
        env.pop(name, None)
    env.update(STATE_DIR=str(state_dir), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if database_url:
        env.update(DATABASE_URL=database_url, AUTO_MIGRATE="true")
    return env


# --------------------------------------------------------------------------- load


@dataclass
class Samples:
    latencies_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add_error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def summary(self, seconds: float) -> dict[str, Any]:
        ok = sorted(self.latencies_s)
        count = len(ok) + sum(self.errors.values())

        def pct(q: float) -> float | None:
            return round(1000 * ok[min(len(ok) - 1, int(q * len(ok)))], 2) if ok else None

        return {
            "requests": count,
            "ok": len(ok),
            "errors": sum(self.errors.values()),
            "error_kinds": self.errors,
            "req_per_s": round(len(ok) / seconds, 1),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "mean_ms": round(1000 * statistics.fmean(ok), 2) if ok else None,
        }


async def timed_get(client: httpx.AsyncClient, path: str, headers: dict, into: Samples) -> None:
    started = time.perf_counter()
    try:
        response = await client.get(path, headers=headers)
    except httpx.HTTPError as error:
        into.add_error(type(error).__name__)
        return
    if response.status_code == 200:
        into.latencies_s.append(time.perf_counter() - started)
    else:
        into.add_error(str(response.status_code))


async def run_level(
    base: str, path: str, token: str, clients: int, seconds: float
) -> dict[str, Any]:
    """`clients` concurrent loops for `seconds`, each alternating `path` and TRIVIAL."""
    target, trivial = Samples(), Samples()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        deadline = time.monotonic() + seconds

        async def loop(index: int) -> None:
            # Half the clients start on the trivial route, so both are in flight at once.
            order = [(path, headers, target), (TRIVIAL, {}, trivial)]
            if index % 2:
                order.reverse()
            while time.monotonic() < deadline:
                for route, route_headers, samples in order:
                    await timed_get(client, route, route_headers, samples)

        started = time.monotonic()
        await asyncio.gather(*(loop(i) for i in range(clients)))
        elapsed = time.monotonic() - started
    measured, reference = target.summary(elapsed), trivial.summary(elapsed)
    ratio = None
    if measured["p99_ms"] and reference["p99_ms"]:
        ratio = round(measured["p99_ms"] / reference["p99_ms"], 2)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "route": measured,
        "trivial": reference,
        "p99_ratio": ratio,
    }


async def hold_streams(base: str, token: str, job_id: str, count: int, ready: asyncio.Event):
    """Open `count` event streams of a queued job and keep reading them; returns how
    many opened with 200 and how many broke before the end."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=count + 10)
    state = {"opened": 0, "failed": 0, "broken": 0}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=None) as client:

        async def one() -> None:
            try:
                async with client.stream(
                    "GET", f"/api/v1/jobs/{job_id}/events", headers=headers
                ) as response:
                    if response.status_code != 200:
                        state["failed"] += 1
                        return
                    state["opened"] += 1
                    if state["opened"] + state["failed"] == count:
                        ready.set()
                    async for _ in response.aiter_lines():
                        pass
                    state["broken"] += 1  # the job stays queued: an end is a break
            except asyncio.CancelledError:
                raise
            except httpx.HTTPError:
                state["broken"] += 1
            finally:
                if state["opened"] + state["failed"] + state["broken"] >= count:
                    ready.set()

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return state


async def with_streams(
    base: str, token: str, job_id: str, streams: int, clients: int, seconds: float
) -> dict[str, Any]:
    ready = asyncio.Event()
    holder = asyncio.create_task(hold_streams(base, token, job_id, streams, ready))
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(ready.wait(), timeout=60)
    level = await run_level(base, f"/api/v1/jobs/{job_id}", token, clients, seconds)
    holder.cancel()
    try:
        state = await holder
    except asyncio.CancelledError:
        state = {"opened": None, "failed": None, "broken": None}
    return {"streams": streams, **state, **level}


# --------------------------------------------------------------------------- runs


def postgres_database(admin_url: str) -> tuple[str, Any]:
    """A new empty database on the server of `admin_url`, and a function to drop it."""
    import psycopg

    name = f"lorita_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{url}/{name}", drop


def run_backend(
    backend: str, levels: list[int], seconds: float, streams: int, pg_admin: str
) -> dict[str, Any]:
    drop = None
    with tempfile.TemporaryDirectory(prefix="lorita-load-") as folder:
        state = Path(folder)
        url = ""
        if backend == "postgresql":
            url, drop = postgres_database(pg_admin)
        env = server_env(state / "state", url)
        try:
            token, job_id = seed(env)
            server = Server(env, state / "server.log").wait_ready()
            try:
                result: dict[str, Any] = {"backend": backend, "job": [], "jobs": []}
                for clients in levels:
                    for key, path in (("job", f"/api/v1/jobs/{job_id}"), ("jobs", "/api/v1/jobs")):
                        level = asyncio.run(run_level(server.base, path, token, clients, seconds))
                        result[key].append(level)
                        print(backend, key, format_row(level), flush=True)
                if streams:
                    level = asyncio.run(
                        with_streams(server.base, token, job_id, streams, 50, seconds)
                    )
                    result["streams"] = level
                    print(backend, f"{streams} streams +", format_row(level), flush=True)
                result["server_log_tail"] = (state / "server.log").read_text()[-2000:]
            finally:
                server.stop()
        finally:
            if drop is not None:
                drop()
    return result


def format_row(level: dict[str, Any]) -> str:
    route, trivial = level["route"], level["trivial"]
    return (
        f"clients={level['clients']:>4} route {route['req_per_s']:>7} req/s "
        f"p50 {route['p50_ms']} p99 {route['p99_ms']} ms errors {route['errors']} | "
        f"trivial p99 {trivial['p99_ms']} ms errors {trivial['errors']} | "
        f"ratio {level['p99_ratio']}"
    )


def markdown_table(report: dict[str, Any]) -> str:
    """The README table: one row per backend, route and level (streams last)."""
    lines = [
        "| backend | route | clients | req/s | p50 ms | p99 ms | errors | trivial p99 ms "
        "| trivial errors | p99 ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"job": "GET /jobs/{id}", "jobs": "GET /jobs"}

    def row(backend: str, route: str, level: dict[str, Any]) -> str:
        measured, trivial = level["route"], level["trivial"]
        return (
            f"| {backend} | {route} | {level['clients']} | {measured['req_per_s']} "
            f"| {measured['p50_ms']} | {measured['p99_ms']} | {measured['errors']} "
            f"| {trivial['p99_ms']} | {trivial['errors']} | {level['p99_ratio']} |"
        )

    for run in report["runs"]:
        for key in ("job", "jobs"):
            lines += [row(run["backend"], names[key], level) for level in run[key]]
        if "streams" in run:
            level = run["streams"]
            route = f"GET /jobs/{{id}} + {level['streams']} open streams ({level['opened']} opened)"
            lines.append(row(run["backend"], route, level))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": list(os.getloadavg()),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--seconds", type=float, default=6.0, help="per level and route")
    parser.add_argument("--streams", type=int, default=STREAMS)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the README table of --out")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    levels = [int(value) for value in args.levels.split(",") if value]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    report: dict[str, Any] = {"machine": machine(), "seconds_per_level": args.seconds}
    report["runs"] = [
        run_backend(backend, levels, args.seconds, args.streams, args.pg) for backend in backends
    ]
    report["machine"]["load_average_after"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
