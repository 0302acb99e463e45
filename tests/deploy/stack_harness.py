"""Runs the docker-compose topology as plain processes on this machine.

Each compose service becomes a process started with the command its image runs
(read from docker-compose.yml and the Dockerfiles), with the environment compose
gives it; the named volumes become folders shared by those processes:

    postgres   -> the PostgreSQL server already running here (a fresh database)
    redis      -> the Redis server already running here (own db index, key prefix, queue)
    migrate    -> `alembic upgrade head`, run once, must exit 0
    api        -> uvicorn with the api image's CMD, on a free port
    worker xN  -> docker/gpu_slot.py + `python -m worker.main`, one process per replica
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from deployfiles import API_DOCKERFILE, COMPOSE_FILE, REPO, WORKER_DOCKERFILE, read_dockerfile

OUTPUT_DIR = REPO / "test-output"
TRANSCRIPT_FILE = OUTPUT_DIR / "stack_transcript.txt"
LOG_DIR = OUTPUT_DIR / "stack-logs"
# Where the images keep their entrypoint scripts, and where they are in the repo.
IMAGE_SCRIPTS = {"/usr/local/bin/": REPO / "docker"}


class Transcript:
    """Lines with the seconds since the start, printed (pytest -s) and written to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.started = time.monotonic()
        self.file = path.open("w", encoding="utf-8")

    def __call__(self, message: str = "") -> None:
        elapsed = time.monotonic() - self.started
        for line in message.splitlines() or [""]:
            text = f"[{elapsed:6.1f}s] {line}"
            print(text, flush=True)
            self.file.write(text + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_argv(argv: list[str]) -> list[str]:
    """An image's command for this machine: its console scripts and scripts from the repo."""
    program, *rest = argv
    if program == "python":
        head = [sys.executable]
    elif program in ("alembic", "uvicorn", "celery"):
        head = [sys.executable, "-m", program]
    else:
        head = [program]
    localized = []
    for arg in rest:
        for image_dir, repo_dir in IMAGE_SCRIPTS.items():
            if arg.startswith(image_dir):
                arg = str(repo_dir / arg[len(image_dir) :])
        localized.append(arg)
    return head + localized


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


@dataclass
class ComposeCommands:
    """The commands docker compose would run, taken from the deployment files."""

    migrate: list[str]
    api: list[str]
    worker: list[str]
    worker_healthcheck: list[str]

    @classmethod
    def read(cls) -> ComposeCommands:
        services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
        api_image = read_dockerfile(API_DOCKERFILE)
        worker_image = read_dockerfile(WORKER_DOCKERFILE)
        entrypoint = worker_image.exec_form("ENTRYPOINT", "worker")
        health = services["worker"]["healthcheck"]["test"]
        assert health[0] == "CMD"
        return cls(
            migrate=local_argv(services["migrate"]["command"]),
            api=local_argv(api_image.exec_form("CMD", "api")),
            worker=local_argv(entrypoint + services["worker"]["command"]),
            worker_healthcheck=local_argv(health[1:]),
        )


@dataclass
class Stack:
    env: dict[str, str]
    say: Transcript
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def run_once(self, name: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        self.say(f"{name}: {shown(argv)}")
        return subprocess.run(
            argv, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{name}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                argv,
                env={**self.env, **(extra_env or {})},
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: cleanup reaches its children and nothing else.
                start_new_session=True,
            )
        self.processes[name], self.logs[name] = process, log_path
        self.say(f"{name}: {shown(argv)}")
        self.say(f"{name}: started pid {process.pid}, log {log_path.relative_to(REPO)}")
        return process

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def wait_for_log(self, name: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text(name):
                return
            if self.processes[name].poll() is not None:
                break
            time.sleep(0.2)
        tail = "\n".join(self.log_text(name).splitlines()[-40:])
        raise AssertionError(f"{name} did not log {text!r} in {timeout:g}s; log tail:\n{tail}")

    def stop(self, name: str, sig: int, timeout: float) -> int:
        """Send `sig` to a process as `docker stop` does; its exit code (waits up to timeout)."""
        process = self.processes[name]
        process.send_signal(sig)
        return process.wait(timeout=timeout)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def shown(argv: list[str]) -> str:
    """A command as the transcript shows it: `python` for this interpreter, repo-relative paths."""
    words = ["python" if arg == sys.executable else arg.replace(f"{REPO}/", "") for arg in argv]
    if words[:2] == ["python", "-m"]:
        words = words[2:]  # the console script the image runs (alembic, uvicorn)
    return " ".join(words)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
