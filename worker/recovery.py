"""Finds jobs whose worker died (no heartbeat) and puts them back in the queue.

Brokers redeliver unacknowledged messages only after a long visibility timeout
(Redis) or not at all after a crash (the embedded SQLite broker), so the job
table's heartbeats are what detects a lost worker. Every worker runs this watch
over the jobs of its own queue; the guarded UPDATE in store.jobs.recover_orphans
lets only one of them requeue a given job, which resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from store import jobs as repo
from store.db import session_scope
from store.models import utcnow
from store.settings import Settings
from worker.enqueue import enqueue_job

log = logging.getLogger("lorita.worker")


def recover_orphaned_jobs(settings: Settings) -> list[str]:
    stale_before = utcnow() - timedelta(seconds=settings.job_stale_after_s)
    with session_scope(settings) as session:
        requeued, ended = repo.recover_orphans(
            session, settings.queue_name, stale_before, settings.job_max_attempts
        )
    for job_id in requeued:
        log.warning("job %s: its worker stopped responding; queued again", job_id)
        enqueue_job(job_id, settings)
    for job_id in ended:
        log.warning("job %s: its worker stopped responding; job ended", job_id)
    return requeued


def start_orphan_watch(settings: Settings) -> threading.Event:
    """Check now and then periodically in a daemon thread; set the returned event to stop."""
    stop = threading.Event()
    interval = max(1.0, min(settings.job_stale_after_s / 2, 30.0))

    def loop() -> None:
        while True:
            try:
                recover_orphaned_jobs(settings)
            except Exception:
                log.exception("orphaned-job check failed")
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="lorita-orphan-watch", daemon=True).start()
    return stop
