"""`lorita serve`: the embedded default - API + one real Celery worker, nothing to install.

The database is migrated on start (SQLite by default), a local user and token
are created once (the token is kept in STATE_DIR/local-token, mode 0600, so the
printed URL keeps working across restarts), a worker process is started with
the same settings, and uvicorn serves the API in this process. Stopping the
server stops the worker (a running job goes back to the queue and resumes from
its checkpoint on the next start).
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import subprocess
import sys
import threading
import time
import webbrowser

import uvicorn

from api.main import create_app
from store.db import session_scope
from store.migrate import ensure_schema
from store.settings import Settings, get_settings
from store.tokens import create_token, verify_token

LOCAL_USER = "local"
WORKER_STOP_TIMEOUT_S = 60
RESTART_CHECK_S = 2.0


class PortInUse(SystemExit):
    """The chosen port is taken (most often by another `lorita serve`): say how to pick one."""


def ensure_port_free(host: str, port: int) -> None:
    """Fail before anything starts, with the way out, when host:port cannot be bound.

    uvicorn alone would start the worker, then die with a bare "address already in use".
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # The same option uvicorn sets, so a port in TIME_WAIT is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                f"Port {port} on {host} is already in use (is another `lorita serve` "
                f"running?). Choose another port: lorita serve --port {port + 1} "
                f"(or make serve PORT={port + 1})."
            ) from None


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as environment variables, so a child process sees the same ones."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name.upper()] = str(value)
    return env


def local_token(settings: Settings) -> str:
    """The embedded mode's sign-in token: reuse the saved one while it is valid."""
    path = settings.token_file
    if path.is_file():
        saved = path.read_text(encoding="utf-8").strip()
        with session_scope(settings) as session:
            if saved and verify_token(session, saved) is not None:
                return saved
    with session_scope(settings) as session:
        token = create_token(session, "local-serve", user_name=LOCAL_USER)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def start_worker(settings: Settings) -> subprocess.Popen:
    env = {**os.environ, **settings_env(settings), "LORITA_PARENT_PID": str(os.getpid())}
    return subprocess.Popen([sys.executable, "-m", "worker.main"], env=env)


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    # SIGTERM = Celery warm shutdown: the job stops at the next batch and is requeued.
    process.terminate()
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class WorkerSupervisor:
    """Keeps one worker process running beside the API (restarts it if it dies)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process = start_worker(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(RESTART_CHECK_S):
            code = self.process.poll()
            if code is not None and not self._stop.is_set():
                print(f"worker exited with code {code}; starting a new one", flush=True)
                # Its running job (if any) is found by the new worker's orphan watch.
                self.process = start_worker(self.settings)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=RESTART_CHECK_S + 1)
        stop_worker(self.process)


def run_serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
    settings: Settings | None = None,
) -> None:
    settings = settings or get_settings()
    ensure_port_free(host, port)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_schema(settings)
    token = local_token(settings)
    base = settings.public_url.rstrip("/") or f"http://{host}:{port}"
    url = f"{base}/login#token={token}"

    worker = WorkerSupervisor(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=host, port=port, log_level="info")
    )

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.1)
        print(f"LoRITa is running: {url}", flush=True)
        if open_browser:
            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        worker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the LoRITa service (API + one worker).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    args = parser.parse_args(argv)
    run_serve(args.host, args.port, args.open)


if __name__ == "__main__":
    main()
