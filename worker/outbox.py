"""What a running job could not write while the database was away, kept in order.

Training does not need the database, so an outage must not cost the job its
history: epoch events (and their metrics), stage events and the final state are
kept in memory by the worker and written, oldest first, as soon as a write goes
through again. Replays are idempotent where it matters: an epoch's metrics row is
an upsert keyed by (job, run, epoch), and each event is written in the
transaction that also writes its metrics, so a failed write left nothing behind.
Batch progress is not kept (the next one supersedes it).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("lorita.worker")

# Errors that mean "the database cannot be reached now" rather than a bad write.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


_last_unavailable = [float("-inf")]  # monotonic time this process last saw an outage


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached (and remember when)."""
    unavailable = isinstance(error, UNAVAILABLE) or (
        isinstance(error, DBAPIError) and bool(error.connection_invalidated)
    )
    if unavailable:
        _last_unavailable[0] = time.monotonic()
    return unavailable


def seconds_since_unavailable() -> float:
    return time.monotonic() - _last_unavailable[0]


class Outbox:
    """Events waiting for the database, written in order by `flush`."""

    def __init__(self, job_id: str, write: Callable[[dict[str, Any]], None]):
        self.job_id = job_id
        self._write = write
        self._pending: deque[dict[str, Any]] = deque()
        self._waiting = False  # the database was found away and has not come back yet

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, event: dict[str, Any]) -> None:
        self._pending.append(event)

    def flush(self) -> bool:
        """Write what is pending, oldest first; False (the rest kept) if the database is
        still away. An event that fails for another reason is logged and dropped."""
        while self._pending:
            try:
                self._write(self._pending[0])
            except Exception as error:
                if database_unavailable(error):
                    if not self._waiting:
                        self._waiting = True
                        log.warning(
                            "job %s: database unavailable; keeping events until it returns",
                            self.job_id,
                        )
                    return False
                # Not an outage: this one event cannot be written; keep the others.
                log.warning(
                    "job %s: could not record event %s (%s)",
                    self.job_id, self._pending[0].get("type"), error,
                )  # fmt: skip
            self._pending.popleft()
        if self._waiting:
            self._waiting = False
            log.info("job %s: database back; the kept events are written", self.job_id)
        return True


def retry_while_unavailable(
    action: Callable[[], Any],
    *,
    what: str,
    give_up: Callable[[], bool],
    max_wait_s: float,
) -> Any:
    """Run `action` until it gets through the database (waiting out an outage), up to
    max_wait_s or until give_up() says stop; then the last error is raised."""
    deadline = time.monotonic() + max_wait_s
    delay = RETRY_FIRST_S
    while True:
        try:
            return action()
        except Exception as error:
            if not database_unavailable(error) or give_up() or time.monotonic() > deadline:
                raise
            log.warning("%s: database unavailable, retrying in %.1fs", what, delay)
        time.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)
