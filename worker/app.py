"""The Celery application, configured from store.settings.

One job at a time per worker process: jobs are long and hold a whole GPU, so a
worker takes no message ahead of the one it runs (prefetch 1) and acknowledges a
message only when the job has ended (acks_late), so a worker that dies mid-job
does not lose it.
"""

from __future__ import annotations

import threading

from celery import Celery

from store.settings import Settings, get_settings

RUN_JOB_TASK = "lorita.run_job"

_apps: dict[tuple[str, str, str], Celery] = {}
_lock = threading.Lock()


def broker_transport_options(settings: Settings) -> dict:
    url = settings.broker_url
    if url.startswith("sqla+"):
        # The embedded broker is a SQLite file shared by the API and the worker; these
        # options go to SQLAlchemy's create_engine (a busy timeout instead of "locked").
        return {"connect_args": {"timeout": 30}}
    if url.startswith(("redis://", "rediss://", "redis+socket://", "sentinel://")):
        options: dict = {"visibility_timeout": settings.broker_visibility_timeout_s}
        if settings.broker_key_prefix:
            options["global_keyprefix"] = settings.broker_key_prefix
        return options
    return {}


def make_celery(settings: Settings) -> Celery:
    app = Celery("lorita", broker=settings.broker_url, include=[])
    app.conf.update(
        task_default_queue=settings.queue_name,
        task_routes={RUN_JOB_TASK: {"queue": settings.queue_name}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        result_backend=None,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_hijack_root_logger=False,
        # Task events and remote control let Flower / `celery inspect` see the workers
        # (Celery turns remote control off by itself on the embedded broker).
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings),
        task_serializer="json",
        accept_content=["json"],
        # The job row is the source of truth; a message only says "look at job X".
        task_track_started=False,
    )
    # Remembered so the worker task can enqueue follow-ups with the same settings.
    app.lorita_settings = settings
    return app


def celery_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    key = (settings.broker_url, settings.queue_name, settings.broker_key_prefix)
    with _lock:
        if key not in _apps:
            _apps[key] = make_celery(settings)
        return _apps[key]
