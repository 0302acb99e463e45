"""Workers die or stop mid-job; the job is not lost and resumes from its checkpoint."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store.artifacts import artifact_store

from .conftest import QUICK_SPEC, Api, WorkerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]

# Long enough that a worker is stopped mid-training even on a fast, idle machine: an
# epoch of small batches over the whole digits training split takes seconds (1.5-3 s on
# an idle 2-core CPU), and the stop comes within a poll (0.2 s) of the first checkpoint,
# 11 epochs before the end. If the job ever finished first, the attempt counts below
# would fail the test, not pass it.
EPOCHS = 12
SPEC = {
    **QUICK_SPEC,
    "data": {"dataset": "digits"},
    "train": {"epochs": EPOCHS, "batch_size": 16},
}


@pytest.fixture
def own_queue(settings, alice, request, tmp_path):
    """An API, a queue and two idle workers of the test's own: one will take the job,
    the other must take over. The workers are stopped when the test ends."""
    queue = f"{settings.queue_name}-{request.node.name}"
    isolated = settings.model_copy(update={"queue_name": queue})
    workers = [WorkerProcess(isolated, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()
        with TestClient(create_app(isolated)) as client:
            yield isolated, Api(client, alice.token), workers
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in workers:
            worker.stop()


def wait_for_checkpoint(api: Api, settings, job_id: str) -> None:
    checkpoints = artifact_store(settings).job_dir(job_id) / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        epochs = api.get(f"/jobs/{job_id}/metrics").json()["epochs"]
        if epochs and any(checkpoints.glob("*")):
            return
        time.sleep(0.2)
    raise AssertionError("no epoch checkpoint within 120 s")


def attempts_from_events(api: Api, job_id: str) -> list[list[int]]:
    """Epoch numbers trained by each attempt (split at each 'running' state event)."""
    attempts: list[list[int]] = []
    for event in api.events(job_id):
        if event["event"] == "state" and event["data"]["status"] == "running":
            attempts.append([])
        elif event["event"] == "epoch" and event["data"]["run"] == "lorita":
            attempts[-1].append(event["data"]["epoch"])
    return attempts


def split_by_runner(workers, job: dict):
    runner = next(w for w in workers if f"lorita-{w.process.pid}-" in job["worker"])
    return runner, next(w for w in workers if w is not runner)


def test_sigkill_mid_training_then_another_worker_resumes(own_queue):
    settings, api, workers = own_queue
    job_id = api.submit(SPEC)
    wait_for_checkpoint(api, settings, job_id)
    runner, other = split_by_runner(workers, api.job(job_id))
    runner.kill()
    assert api.job(job_id)["status"] == "running"  # nobody knows yet

    # The heartbeat goes stale, the other worker's watch requeues the job and runs it.
    job = api.wait_final(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert f"lorita-{other.process.pid}-" in job["worker"]

    attempts = attempts_from_events(api, job_id)
    assert len(attempts) == 2
    killed, resumed = attempts
    assert killed and killed[0] == 1
    # Resumed after the last checkpoint, not from epoch 1.
    assert resumed[0] > 1 and resumed[-1] == EPOCHS
    assert resumed[0] <= killed[-1] + 1
    metrics = api.get(f"/jobs/{job_id}/metrics").json()["epochs"]
    epochs = [m["epoch"] for m in metrics if m["run"] == "lorita"]
    assert sorted(epochs) == list(range(1, EPOCHS + 1))


def test_sigterm_hands_the_job_to_the_next_worker(own_queue):
    settings, api, workers = own_queue
    job_id = api.submit(SPEC)
    wait_for_checkpoint(api, settings, job_id)
    runner, other = split_by_runner(workers, api.job(job_id))
    runner.stop(timeout=60)  # SIGTERM: Celery's warm shutdown
    assert runner.process.returncode == 0

    job = api.wait_final(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert f"lorita-{other.process.pid}-" in job["worker"]
    states = [e["data"] for e in api.events(job_id) if e["event"] == "state"]
    assert "worker shutting down" in states[2].get("reason", ""), states
    killed, resumed = attempts_from_events(api, job_id)
    assert resumed[0] > 1 and resumed[-1] == EPOCHS
