"""Fixtures for the dashboard's browser tests: the real service and a real browser.

The service runs as it does for a user of the embedded default: uvicorn serving
the API (and with it the dashboard) plus one Celery worker process, on SQLite and
the SQLite-backed broker, everything in a temporary folder. Chromium comes from
the system (Debian's package); Playwright drives it, no downloaded browser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.service_load import free_port, run_python
from tests.local_state import service_env

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-output" / "screenshots"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Without the networking switches Chromium keeps calling home, which a closed
# network answers with a stream of refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
START_TIMEOUT_S = 60


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


@dataclass
class Service:
    base_url: str
    token: str
    root: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for_job(self, job_id: str, states: tuple[str, ...], timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while True:
                job = client.get(f"/jobs/{job_id}").json()
                if job["status"] in states:
                    return job
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"job {job_id} still {job['status']} after {timeout_s}s\n"
                        f"worker log:\n{self.log_tail('worker')}"
                    )
                time.sleep(0.5)


def _service_env(root: Path) -> dict[str, str]:
    # The state folder holds the SQLite database and broker, as in the embedded default.
    return service_env(
        root,
        DATABASE_URL=f"sqlite:///{root / 'state' / 'lorita.db'}",
        BROKER_URL=f"sqla+sqlite:///{root / 'state' / 'broker.db'}",
        WORKER_DEVICE="cpu",
    )


def _start(name: str, args: list[str], env: dict[str, str], root: Path) -> subprocess.Popen:
    log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop_all(processes: list[subprocess.Popen]) -> None:
    # Signal every process first, then wait: they shut down in parallel.
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            # Nothing is running by now, so a short grace is enough.
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_healthy(service: Service) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        api = service.processes["api"]
        if api.poll() is not None:
            raise RuntimeError(f"the API exited ({api.returncode}):\n{service.log_tail('api')}")
        try:
            if httpx.get(f"{service.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not answer /healthz:\n{service.log_tail('api')}")


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("dashboard-service")
    (root / "state").mkdir()
    env = _service_env(root)
    # Creating the token first also migrates the database, so the API and the
    # worker start on a ready schema instead of racing to create it.
    token = run_python("from store.tokens import create_token_cli as c; c('e2e')", env, timeout=120)
    port = free_port()
    service = Service(base_url=f"http://127.0.0.1:{port}", token=token, root=root, env=env)
    service.processes["worker"] = _start("worker", ["-m", "worker.main"], env, root)
    service.processes["api"] = _start(
        "api",
        ["-m", "uvicorn", "api.main:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env,
        root,
    )  # fmt: skip
    try:
        _wait_healthy(service)
        yield service
    finally:
        _stop_all(list(service.processes.values()))


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sklearn's 8x8 digits as an upload file (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    split = int(0.8 * len(labels))
    path = tmp_path_factory.mktemp("upload") / "digits-8x8.npz"
    np.savez(
        path,
        x_train=images[:split],
        y_train=labels[:split],
        x_test=images[split:],
        y_test=labels[split:],
    )
    return path


@pytest.fixture(scope="session")
def digits_upload(service: Service, digits_npz: Path) -> dict:
    """The digits file uploaded through the API (for tests that are not about uploading)."""
    with service.client() as client, digits_npz.open("rb") as handle:
        response = client.post(
            "/datasets",
            files={"file": (digits_npz.name, handle, "application/octet-stream")},
            data={"name": "digits-api"},
        )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="session")
def quick_job(service: Service) -> str:
    """A small job queued as soon as the service is up, so the worker is busy early and
    the compare page has a second finished job."""
    spec = {
        "model": {"arch": "fcn"},
        "data": {"dataset": "digits", "train_subset": 400},
        "lorita": {"factor": 2},
        "train": {"epochs": 1},
    }
    with service.client() as client:
        response = client.post("/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def _new_context(browser, service: Service, viewport: dict, signed_in: bool):
    context = browser.new_context(
        base_url=service.base_url, viewport=viewport, accept_downloads=True
    )
    context.set_default_timeout(20_000)
    if signed_in:
        # The start URL `lorita serve` prints: the page names the account, one click
        # signs in and lands on the jobs list.
        page = context.new_page()
        page.goto(f"/login#token={service.token}")
        page.get_by_role("button", name="Sign in as").click()
        page.wait_for_url(f"{service.base_url}/")
        page.close()
    return context


@pytest.fixture
def context(browser, service):
    """A browser context signed in through the sign-in link."""
    context = _new_context(browser, service, DESKTOP, signed_in=True)
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    yield page
    # A script error or a blocked resource (CSP) is a bug even if the test passed;
    # the API's 4xx answers the tests provoke are logged by Chromium and expected.
    assert not [e for e in errors if not e.startswith("Failed to load resource")], errors


@pytest.fixture
def new_context(browser, service):
    """Factory for extra contexts (signed out, phone width)."""
    contexts = []

    def make(viewport: dict = DESKTOP, signed_in: bool = True):
        context = _new_context(browser, service, viewport, signed_in)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
