"""The embedded default: `python -m api.serve` (what `lorita serve` runs) on SQLite and
the local broker, with its own worker process - no PostgreSQL or Redis involved."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from api.serve import local_token
from store.settings import Settings

from .conftest import QUICK_SPEC, REPO_ROOT, Api
from .test_jobs import download_model_and_check_accuracy

pytestmark = [pytest.mark.service, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    def __init__(self, state_dir, port: int):
        env = {
            key: value
            for key, value in os.environ.items()
            if key.lower() not in Settings.model_fields and key != "LORITA_PARENT_PID"
        }
        env.update(STATE_DIR=str(state_dir), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_url(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith("LoRITa is running: "):
                    return line.removeprefix("LoRITa is running: ")
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("no start line:\n" + "\n".join(self.lines))

    def wait_worker_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(" ready." in line for line in self.lines):
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.2)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def test_embedded_default_runs_a_job_end_to_end(tmp_path):
    state = tmp_path / "state"
    served = Served(state, free_port())
    try:
        url = served.wait_url()
        token = parse_qs(urlparse(url).fragment)["token"][0]
        token_file = state / "local-token"
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        base = url.split("/login")[0]

        with httpx.Client(base_url=base, timeout=30) as browser:
            # The link leads to the sign-in page, which POSTs the fragment's token.
            login = browser.get(url, follow_redirects=False)
            assert login.status_code == 303 and "lorita_token" not in browser.cookies
            assert browser.post("/api/v1/session", json={"token": token}).status_code == 200
            assert "lorita_token" in browser.cookies
            assert browser.get("/api/v1/me").json() == {"name": "local"}
            health = browser.get("/healthz").json()
            assert health == {"status": "ok", "database": "ok", "broker": "ok"}

        with httpx.Client(base_url=base, timeout=30) as http:
            api = Api(http, token)
            job_id = api.submit(QUICK_SPEC)
            served.wait_worker_ready()
            events = api.events(job_id)
            epochs = [
                (e["data"]["run"], e["data"]["epoch"]) for e in events if e["event"] == "epoch"
            ]
            assert epochs[0] == ("lorita", 1) and {run for run, _ in epochs} <= {
                "lorita",
                "finetune at 0.1x lr",
                "finetune at 1x lr",
            }
            job = api.job(job_id)
            assert job["status"] == "succeeded", job
            assert f"lorita-{served.process.pid}-" not in job["worker"]  # a separate process
            accuracy = download_model_and_check_accuracy(api, job, tmp_path / "model")
            assert accuracy == pytest.approx(job["result"]["accuracy"]["compressed"], abs=1e-6)
    finally:
        served.stop()

    assert (state / "lorita.db").is_file() and (state / "broker.db").is_file()
    assert "worker: Warm shutdown" in "\n".join(served.lines)
    # The same sign-in URL keeps working after a restart.
    assert local_token(Settings(state_dir=state)) == token
