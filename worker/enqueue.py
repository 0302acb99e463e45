"""The one function the API uses to hand a job to the workers."""

from __future__ import annotations

from store.settings import Settings
from worker.app import RUN_JOB_TASK, celery_app


def enqueue_job(job_id: str, settings: Settings | None = None) -> None:
    """Publish "run job `job_id`"; the job row must be committed (status queued) first."""
    app = celery_app(settings)
    # By name: the API process never imports the task module (and with it torch).
    app.send_task(RUN_JOB_TASK, args=[job_id], queue=app.conf.task_default_queue)
