"""Docker healthcheck of a worker container.

Healthy when the worker process runs and both the job database and the broker
answer. Celery's own `inspect ping` cannot be used: the worker runs a solo pool
with remote control off, so it would not answer while it trains. Exit 0 when
healthy, 1 otherwise; the reason is printed (shown by `docker inspect`).
"""

from __future__ import annotations

import os
import sys

CONNECT_TIMEOUT_S = 5


def worker_process_running() -> bool:
    """Is `python -m worker.main` (or `lorita worker`) among this container's processes?"""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                argv = file.read().split(b"\0")
        except OSError:
            continue  # the process ended while we looked
        if b"worker.main" in argv or (
            b"worker" in argv and any(a.endswith(b"lorita") for a in argv)
        ):
            return True
    return False


def database_error() -> str | None:
    from sqlalchemy import text

    from store.db import get_engine

    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        return f"database: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def broker_error() -> str | None:
    from kombu import Connection

    from store.settings import get_settings
    from worker.app import broker_transport_options

    settings = get_settings()
    try:
        with Connection(
            settings.broker_url,
            connect_timeout=CONNECT_TIMEOUT_S,
            transport_options=broker_transport_options(settings),
        ) as connection:
            connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
    except Exception as error:
        return f"broker: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def main() -> int:
    problems = []
    if not worker_process_running():
        problems.append("no worker process (python -m worker.main) is running")
    problems += [p for p in (database_error(), broker_error()) if p]
    if problems:
        print("unhealthy: " + "; ".join(problems))
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
