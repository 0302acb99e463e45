"""Broker hygiene: no job message is left unacknowledged once nobody will ack it.

With Redis, a message a worker has taken sits in the broker's `unacked` hash until
that worker acknowledges it (acks_late: when the job ends). A worker killed with
SIGKILL never does, nor one whose ack failed because Redis was restarting ("Couldn't
ack"); Redis would deliver such a message again only after the visibility timeout
(BROKER_VISIBILITY_TIMEOUT_S, 12 h by default, longer than any job).

Dead workers are found sooner by the job table's heartbeats: the stale-job check
(JOB_STALE_AFTER_S) requeues the job with a new message. Before it does, the old
delivery of that job is removed here, so one job never has two messages; and a
periodic sweep removes deliveries of jobs that have ended. Should a message come
back anyway, the task skips any job that is not queued and acknowledges the
message, so a job still runs exactly once.

The embedded SQLite broker keeps no unacknowledged messages: nothing to do there.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable

from store.settings import Settings
from worker.app import RUN_JOB_TASK, celery_app

log = logging.getLogger("lorita.worker")


def _is_redis(settings: Settings) -> bool:
    return settings.broker_url.startswith(("redis://", "rediss://", "redis+socket://"))


def _job_of(payload: bytes | str) -> str | None:
    """The job id a stored delivery is about, or None when it is not a job message."""
    try:
        message = json.loads(payload)[0]
        if message.get("headers", {}).get("task") != RUN_JOB_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _deliveries(channel) -> list[tuple[bytes, str]]:
    """(delivery tag, job id) of every unacknowledged job message. Only commands that
    kombu prefixes with BROKER_KEY_PREFIX itself are used (ZRANGE, HGET)."""
    client = channel.client
    found = []
    for tag in client.zrange(channel.unacked_index_key, 0, -1):
        payload = client.hget(channel.unacked_key, tag)
        job_id = _job_of(payload) if payload else None
        if job_id:
            found.append((tag, job_id))
    return found


def forget_deliveries(settings: Settings, keep: Callable[[str], bool]) -> list[str]:
    """Remove the unacknowledged job messages whose job `keep(job_id)` rejects;
    the ids of the jobs whose messages were removed."""
    if not _is_redis(settings):
        return []
    removed: list[str] = []
    with celery_app(settings).connection_for_write() as connection:
        channel = connection.default_channel
        for tag, job_id in _deliveries(channel):
            if keep(job_id):
                continue
            with channel.client.pipeline() as pipe:
                pipe.zrem(channel.unacked_index_key, tag).hdel(channel.unacked_key, tag)
                pipe.execute()
            removed.append(job_id)
    return removed


def forget_job_deliveries(settings: Settings, job_ids: Iterable[str]) -> list[str]:
    """Before a requeue: drop the dead worker's deliveries of these jobs."""
    targets = set(job_ids)
    if not targets:
        return []
    removed = forget_deliveries(settings, lambda job_id: job_id not in targets)
    for job_id in removed:
        log.info("job %s: removed the lost worker's unacknowledged message", job_id)
    return removed


def sweep_finished_deliveries(settings: Settings, is_final: Callable[[set[str]], set[str]]):
    """Drop deliveries of jobs that have ended (or are gone): nobody will ack them.

    is_final(job ids) -> the subset that is final or missing in the job table."""
    if not _is_redis(settings):
        return []
    with celery_app(settings).connection_for_write() as connection:
        candidates = {job_id for _, job_id in _deliveries(connection.default_channel)}
    if not candidates:
        return []
    ended = is_final(candidates)
    removed = forget_deliveries(settings, lambda job_id: job_id not in ended)
    for job_id in removed:
        log.info("job %s: removed a stale unacknowledged message of the ended job", job_id)
    return removed
