"""Finds jobs whose worker died (no heartbeat) and puts them back in the queue.

Brokers redeliver unacknowledged messages only after a long visibility timeout
(Redis) or not at all after a crash (the embedded SQLite broker), so the job
table's heartbeats are what detects a lost worker. Every worker runs this watch
over the jobs of its own queue; the guarded UPDATE in store.jobs.recover_orphans
lets only one of them requeue a given job, which resumes from its last checkpoint.
After a database outage the check waits one stale period (live workers could not
write heartbeats either), and a requeue first removes the dead worker's broker
delivery (worker.deliveries), so a job never has two messages.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import select

from store import jobs as repo
from store.db import session_scope
from store.models import FINAL_STATES, Job, utcnow
from store.settings import Settings
from worker.deliveries import forget_job_deliveries, sweep_finished_deliveries
from worker.enqueue import enqueue_job
from worker.outbox import database_unavailable, seconds_since_unavailable

log = logging.getLogger("lorita.worker")


def recover_orphaned_jobs(settings: Settings) -> list[str]:
    if seconds_since_unavailable() < settings.job_stale_after_s:
        # The database was away a moment ago: heartbeats written during the outage
        # failed for live workers too. Give them a full stale period to catch up.
        log.info("orphaned-job check deferred: the database was unavailable recently")
        return []
    stale_before = utcnow() - timedelta(seconds=settings.job_stale_after_s)
    with session_scope(settings) as session:
        requeued, ended = repo.recover_orphans(
            session, settings.queue_name, stale_before, settings.job_max_attempts
        )
    # The dead worker's message would come back after the visibility timeout as a
    # second message for the job: remove it before publishing the new one.
    forget_job_deliveries(settings, requeued + ended)
    for job_id in requeued:
        log.warning("job %s: its worker stopped responding; queued again", job_id)
        enqueue_job(job_id, settings)
    for job_id in ended:
        log.warning("job %s: its worker stopped responding; job ended", job_id)
    return requeued


def ended_jobs(settings: Settings, job_ids: set[str]) -> set[str]:
    """The jobs among job_ids that are final or no longer exist."""
    with session_scope(settings) as session:
        live = set(
            session.scalars(
                select(Job.id).where(Job.id.in_(job_ids), Job.status.not_in(FINAL_STATES))
            )
        )
    return job_ids - live


def start_orphan_watch(settings: Settings) -> threading.Event:
    """Check now and then periodically in a daemon thread; set the returned event to stop."""
    stop = threading.Event()
    interval = max(1.0, min(settings.job_stale_after_s / 2, 30.0))

    def loop() -> None:
        while True:
            try:
                recover_orphaned_jobs(settings)
                sweep_finished_deliveries(settings, lambda ids: ended_jobs(settings, ids))
            except Exception as error:
                if database_unavailable(error):
                    log.warning("orphaned-job check: database unavailable")
                else:
                    log.exception("orphaned-job check failed")
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="lorita-orphan-watch", daemon=True).start()
    return stop
