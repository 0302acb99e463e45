"""The guarded state changes of store/jobs.py, one race per test.

Each test plays two sides (two workers, or the API and a worker) with sessions of
their own on one SQLite file, in the order that would break an unguarded update:
the loser must learn from the return value that its change did not happen, and
the job must keep the winner's state.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from store import jobs as repo
from store.models import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, utcnow
from tests.store.conftest import QUEUE, event_states, read_job

RESULT = {"accuracy": {"uncompressed": 0.9, "compressed": 0.89}}


def claim(open_session, job_id: str, worker: str) -> bool:
    with open_session() as session:
        won = repo.claim_job(session, job_id, worker)
        session.commit()
        return won


def finish(open_session, job_id: str, worker: str, status: str, **fields) -> bool:
    """`worker` reports the job's end; whether the change happened."""
    with open_session() as session:
        won = repo.finish_job(session, job_id, worker, status, **fields)
        session.commit()
        return won


def cancel(open_session, job_id: str) -> str:
    """The API asks to cancel the job as it reads it now; the status it answers with."""
    with open_session() as api:
        status = repo.request_cancel(api, api.get(Job, job_id))
        api.commit()
        return status


def make_stale(open_session, job_id: str, minutes: int = 10) -> None:
    """Age the job's heartbeat, as if its worker died."""
    with open_session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(minutes=minutes))
        )
        session.commit()


def recover(open_session, max_attempts: int = 3) -> tuple[list[str], list[str]]:
    with open_session() as session:
        found = repo.recover_orphans(session, QUEUE, utcnow() - timedelta(minutes=1), max_attempts)
        session.commit()
        return found


def test_two_workers_claim_one_job_and_one_wins(open_session, queued_job):
    # Both saw the job queued (a redelivered message); both try to start it.
    first, second = open_session(), open_session()
    assert first.get(Job, queued_job).status == QUEUED
    assert second.get(Job, queued_job).status == QUEUED
    assert repo.claim_job(first, queued_job, "worker-a")
    first.commit()
    assert not repo.claim_job(second, queued_job, "worker-b")
    second.commit()
    job = read_job(open_session, queued_job)
    assert (job.status, job.worker, job.attempts) == (RUNNING, "worker-a", 1)


def test_a_job_cancelled_while_queued_is_not_started(open_session, queued_job):
    assert cancel(open_session, queued_job) == CANCELLED
    assert not claim(open_session, queued_job, "worker-a")
    job = read_job(open_session, queued_job)
    assert (job.status, job.worker, job.attempts) == (CANCELLED, None, 0)
    assert event_states(open_session, queued_job) == [QUEUED, CANCELLED]


def test_a_cancel_that_loses_to_the_worker_start_asks_the_worker_to_stop(open_session, queued_job):
    api = open_session()
    job = api.get(Job, queued_job)  # the API read it as queued ...
    assert job.status == QUEUED
    assert claim(open_session, queued_job, "worker-a")  # ... and the worker started it
    # Not "cancelled" while a worker is still training: it is told to stop instead.
    assert repo.request_cancel(api, job) == RUNNING
    api.commit()
    with open_session() as worker:
        assert repo.stop_requested(worker, queued_job)
    stored = read_job(open_session, queued_job)
    assert (stored.status, stored.cancel_requested) == (RUNNING, True)
    assert CANCELLED not in event_states(open_session, queued_job)


def test_cancelling_a_finished_job_changes_nothing(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    assert finish(open_session, queued_job, "worker-a", SUCCEEDED, result=RESULT)
    assert cancel(open_session, queued_job) == SUCCEEDED
    job = read_job(open_session, queued_job)
    assert (job.status, job.cancel_requested, job.result) == (SUCCEEDED, False, RESULT)
    assert event_states(open_session, queued_job) == [QUEUED, SUCCEEDED]


def test_a_worker_cannot_finish_a_job_that_was_cancelled_meanwhile(open_session, queued_job):
    # The worker stalls, recovery sees the pending cancel and ends the job as cancelled;
    # then the worker wakes up and reports success.
    assert claim(open_session, queued_job, "worker-a")
    assert cancel(open_session, queued_job) == RUNNING
    make_stale(open_session, queued_job)
    assert recover(open_session) == ([], [queued_job])
    assert not finish(open_session, queued_job, "worker-a", SUCCEEDED, result=RESULT)
    job = read_job(open_session, queued_job)
    assert (job.status, job.result) == (CANCELLED, None)
    assert event_states(open_session, queued_job) == [QUEUED, CANCELLED]


def test_a_worker_that_lost_its_job_cannot_finish_the_new_owners_run(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    make_stale(open_session, queued_job)
    assert recover(open_session) == ([queued_job], [])
    assert claim(open_session, queued_job, "worker-b")
    assert not finish(
        open_session, queued_job, "worker-a", FAILED, failure_reason="late", failure_kind="internal"
    )
    job = read_job(open_session, queued_job)
    assert (job.status, job.worker, job.attempts, job.failure_reason) == (
        RUNNING,
        "worker-b",
        2,
        None,
    )


def test_a_finished_job_is_not_requeued(open_session, queued_job):
    # A shutting-down worker tries to hand back a job it already finished.
    assert claim(open_session, queued_job, "worker-a")
    assert finish(open_session, queued_job, "worker-a", SUCCEEDED, result=RESULT)
    with open_session() as worker:
        assert not repo.requeue_job(worker, queued_job, "worker-a", "shutting down")
        worker.commit()
    job = read_job(open_session, queued_job)
    assert (job.status, job.worker) == (SUCCEEDED, "worker-a")
    assert event_states(open_session, queued_job) == [QUEUED, SUCCEEDED]


def test_only_the_running_worker_requeues_its_job(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    with open_session() as other:
        assert not repo.requeue_job(other, queued_job, "worker-b", "shutting down")
        other.commit()
    with open_session() as owner:
        assert repo.requeue_job(owner, queued_job, "worker-a", "shutting down")
        owner.commit()
    job = read_job(open_session, queued_job)
    assert (job.status, job.worker, job.heartbeat_at) == (QUEUED, None, None)
    # Queued again, so the next worker can claim it (and resume from the checkpoint).
    assert claim(open_session, queued_job, "worker-b")


def test_a_heartbeat_from_the_wrong_worker_is_refused(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    before = read_job(open_session, queued_job)
    with open_session() as other:
        assert not repo.touch_job(other, queued_job, "worker-b", progress=0.9, stage="export")
        other.commit()
    after = read_job(open_session, queued_job)
    assert (after.progress, after.stage, after.heartbeat_at) == (
        before.progress,
        before.stage,
        before.heartbeat_at,
    )
    with open_session() as owner:
        assert repo.touch_job(owner, queued_job, "worker-a", progress=0.5, stage="train")
        owner.commit()
    assert (
        read_job(open_session, queued_job).progress,
        read_job(open_session, queued_job).stage,
    ) == (
        0.5,
        "train",
    )


def test_a_heartbeat_after_the_end_tells_the_worker_to_stop(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    assert finish(open_session, queued_job, "worker-a", SUCCEEDED, result=RESULT, progress=1.0)
    with open_session() as worker:
        assert not repo.touch_job(worker, queued_job, "worker-a", progress=0.1)
        worker.commit()
    job = read_job(open_session, queued_job)
    assert (job.status, job.progress) == (SUCCEEDED, 1.0)  # the late progress was dropped


def test_a_job_is_finished_once(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    assert finish(open_session, queued_job, "worker-a", SUCCEEDED, result=RESULT)
    assert not finish(
        open_session, queued_job, "worker-a", FAILED, failure_reason="again", failure_kind="x"
    )
    job = read_job(open_session, queued_job)
    assert (job.status, job.failure_reason) == (SUCCEEDED, None)
    assert event_states(open_session, queued_job) == [QUEUED, SUCCEEDED]


def test_finish_refuses_a_state_that_is_not_final(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    with open_session() as worker, pytest.raises(ValueError, match="not a final state"):
        repo.finish_job(worker, queued_job, "worker-a", QUEUED)
    assert read_job(open_session, queued_job).status == RUNNING


def test_recovery_leaves_a_live_job_alone(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")  # heartbeat just now
    assert recover(open_session) == ([], [])
    assert read_job(open_session, queued_job).worker == "worker-a"


def test_recovery_fails_a_job_whose_workers_died_too_often(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    make_stale(open_session, queued_job)
    assert recover(open_session, max_attempts=1) == ([], [queued_job])
    job = read_job(open_session, queued_job)
    assert (job.status, job.failure_kind) == (FAILED, "worker_lost")
    assert "batch_size" in job.failure_reason  # says what to try


def test_two_recoveries_requeue_an_orphan_once(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    make_stale(open_session, queued_job)
    assert recover(open_session) == ([queued_job], [])
    assert recover(open_session) == ([], [])  # the second watcher finds nothing to do
    assert event_states(open_session, queued_job) == [QUEUED, QUEUED]


def test_stop_is_requested_once_the_job_is_gone_or_taken(open_session, queued_job):
    assert claim(open_session, queued_job, "worker-a")
    with open_session() as worker:
        assert not repo.stop_requested(worker, queued_job)
    make_stale(open_session, queued_job)
    recover(open_session)  # requeued: no longer running for worker-a
    with open_session() as worker:
        assert repo.stop_requested(worker, queued_job)
    with open_session() as api:
        repo.delete_job_rows(api, queued_job)
        api.commit()
    with open_session() as worker:
        assert repo.stop_requested(worker, queued_job)
        assert not repo.claim_job(worker, queued_job, "worker-b")


def test_a_repeated_epoch_replaces_its_metrics(open_session, queued_job):
    # A resumed run repeats the epoch it was in when its worker died.
    with open_session() as worker:
        repo.record_epoch(worker, queued_job, {"epoch": 1, "train_loss": 2.0, "val_acc": 0.5})
        repo.record_epoch(
            worker, queued_job, {"epoch": 1, "train_loss": 1.0, "val_acc": float("nan")}
        )
        worker.commit()
        rows = repo.metrics_of(worker, queued_job)
    assert [(row.epoch, row.train_loss, row.val_acc) for row in rows] == [(1, 1.0, None)]
