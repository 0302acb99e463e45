"""Faults during training lose nothing: workers killed, Redis restarted, PostgreSQL
stopped mid-training, a burst of jobs. Each test checks that no job is lost, none
ran twice, every epoch's metrics are recorded, and no broker message lingers.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service.conftest import QUICK_SPEC, Api, WorkerProcess, make_user_token

from api.main import create_app
from store.settings import Settings

pytestmark = [pytest.mark.service, pytest.mark.slow]

EPOCHS = 8
# A few seconds an epoch on two loaded cores; a checkpoint after each.
LONG_SPEC = {
    **QUICK_SPEC,
    "data": {"dataset": "digits"},
    "train": {"epochs": EPOCHS, "batch_size": 32},
}
BURST_SPEC = {**QUICK_SPEC, "data": {"dataset": "digits", "train_subset": 100}}


class Stack:
    """The API in-process, workers as processes, all on the test's own servers."""

    def __init__(self, settings: Settings, tmp_path, client: TestClient):
        self.settings = settings
        self.tmp_path = tmp_path
        self.api = Api(client, make_user_token(settings, "faults"))
        self.workers: list[WorkerProcess] = []

    def worker(self, wait: bool = True) -> WorkerProcess:
        process = WorkerProcess(self.settings, self.tmp_path / f"worker{len(self.workers)}.log")
        self.workers.append(process)
        return process.wait_ready() if wait else process

    def runner_of(self, job_id: str) -> WorkerProcess:
        name = self.api.job(job_id)["worker"] or ""
        return next(w for w in self.workers if f"lorita-{w.process.pid}-" in name)

    def epochs(self, job_id: str) -> list[int]:
        metrics = self.api.get(f"/jobs/{job_id}/metrics").json()["epochs"]
        return [m["epoch"] for m in metrics if m.get("run", "lorita") == "lorita"]

    def wait_epochs(self, job_id: str, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.epochs(job_id)) < count:
            assert time.monotonic() < deadline, f"fewer than {count} epochs in {timeout}s"
            time.sleep(0.2)

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def stack(fault_settings, tmp_path) -> Iterator[Stack]:
    with TestClient(create_app(fault_settings)) as client:
        built = Stack(fault_settings, tmp_path, client)
        try:
            yield built
        finally:
            built.close()


def unacked_messages(redis_server, settings: Settings) -> int:
    return redis_server.client().hlen(f"{settings.broker_key_prefix}unacked")


def queued_messages(redis_server, settings: Settings) -> int:
    return redis_server.client().llen(f"{settings.broker_key_prefix}{settings.queue_name}")


def wait_broker_clean(redis_server, settings: Settings, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while unacked_messages(redis_server, settings) or queued_messages(redis_server, settings):
        assert time.monotonic() < deadline, (
            f"{unacked_messages(redis_server, settings)} unacked and "
            f"{queued_messages(redis_server, settings)} queued messages left"
        )
        time.sleep(0.5)


def assert_complete_history(api: Api, job_id: str, attempts: int) -> None:
    """Succeeded; every epoch's metrics and event exactly once; `attempts` runs."""
    job = api.job(job_id)
    assert job["status"] == "succeeded", job
    metrics = [m for m in api.get(f"/jobs/{job_id}/metrics").json()["epochs"]]
    lorita = sorted(m["epoch"] for m in metrics if m.get("run", "lorita") == "lorita")
    assert lorita == list(range(1, EPOCHS + 1)), lorita
    events = api.events(job_id)
    running = [e for e in events if e["event"] == "state" and e["data"]["status"] == "running"]
    assert len(running) == attempts, [e["data"] for e in running]
    epoch_events = [
        e["data"]["epoch"]
        for e in events
        if e["event"] == "epoch" and e["data"].get("run", "lorita") == "lorita"
    ]
    assert sorted(epoch_events) == list(range(1, EPOCHS + 1)), epoch_events  # none redone
    finals = [e for e in events if e["event"] == "state" and e["data"]["status"] == "succeeded"]
    assert len(finals) == 1


def test_postgres_stopped_20s_mid_training_loses_no_epoch(stack, postgres, redis_server):
    stack.worker()
    job_id = stack.api.submit(LONG_SPEC)
    stack.wait_epochs(job_id, 2)
    postgres.stop()
    time.sleep(20)  # training goes on; its events wait in the worker
    postgres.start()
    job = stack.api.wait_final(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert_complete_history(stack.api, job_id, attempts=1)
    assert "database unavailable; keeping events" in stack.workers[0].log()
    wait_broker_clean(redis_server, stack.settings)


def test_worker_sigkill_three_times_then_the_job_finishes_once(stack, redis_server):
    workers = [stack.worker(wait=False) for _ in range(4)]  # one per attempt
    for worker in workers:  # four torch imports at once are slow on two cores
        worker.wait_ready(timeout=180)
    job_id = stack.api.submit(LONG_SPEC)
    for kill in range(3):
        stack.wait_epochs(job_id, 2 * kill + 1)
        runner = stack.runner_of(job_id)
        runner.kill()
        # The stale-job check requeues it; the lost delivery is removed, not redelivered.
        stack.api.wait_for(
            job_id,
            lambda j, lost=runner: (
                j["status"] == "running"
                and f"lorita-{lost.process.pid}-" not in (j["worker"] or "")
            ),
            timeout=60,
            what=f"another worker after kill {kill + 1}",
        )
    job = stack.api.wait_final(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert_complete_history(stack.api, job_id, attempts=4)
    wait_broker_clean(redis_server, stack.settings)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "kill-9"])
def test_redis_restart_mid_training(stack, redis_server, how):
    stack.worker()
    job_id = stack.api.submit(LONG_SPEC)
    stack.wait_epochs(job_id, 2)
    redis_server.stop(how)
    time.sleep(3)
    redis_server.start()
    assert_complete_history(stack.api, stack.api.wait_final(job_id, 180)["id"], attempts=1)
    after = stack.api.submit(BURST_SPEC)  # the queue works again
    assert stack.api.wait_final(after, 120)["status"] == "succeeded"
    wait_broker_clean(redis_server, stack.settings)


def test_burst_of_30_jobs_each_runs_exactly_once(stack, redis_server):
    for _ in range(2):
        stack.worker()
    job_ids = [stack.api.submit(BURST_SPEC) for _ in range(30)]
    for job_id in job_ids:
        job = stack.api.wait_final(job_id, timeout=240)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1, job
    wait_broker_clean(redis_server, stack.settings)
