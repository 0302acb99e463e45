"""Turns at the database for the API's requests.

Blocking database work runs in worker threads (anyio's thread limiter). If a
request could wait for a thread while it holds a pooled connection, and threads
could wait for connections, the two pools would deadlock under load: with 40
threads and 15 connections the API stopped answering at 56 concurrent requests.

So a request first takes a *turn* here, waiting in the event loop (holding
neither a thread nor a connection). There are exactly as many turns as the
pool has connections (DB_POOL_SIZE + DB_MAX_OVERFLOW) and each turn uses at most
one connection, so a thread never waits for the pool. A request that waits
longer than DB_POOL_TIMEOUT_S for its turn gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from store.db import session_scope
from store.settings import Settings

T = TypeVar("T")


class DatabaseBusy(Exception):
    """No turn at the database came within DB_POOL_TIMEOUT_S (answered 503)."""


def _turns(state: Any, settings: Settings) -> anyio.Semaphore:
    # One semaphore per event loop: a test client may run the same app on several loops.
    loop = asyncio.get_running_loop()
    current = getattr(state, "db_turns", None)
    if current is None or current[0] is not loop:
        current = (loop, anyio.Semaphore(settings.db_connection_limit))
        state.db_turns = current
    return current[1]


@asynccontextmanager
async def database_turn(state: Any, settings: Settings) -> AsyncIterator[None]:
    """Hold one of the database turns of the app whose `state` is given."""
    turns = _turns(state, settings)
    with anyio.move_on_after(settings.db_pool_timeout_s) as waiting:
        await turns.acquire()
    if waiting.cancelled_caught:
        raise DatabaseBusy()
    try:
        yield
    finally:
        turns.release()


async def run_in_session(state: Any, settings: Settings, work: Callable[[Session], T]) -> T:
    """`work(session)` in a worker thread, in a short session of its own (committed on
    success), during one database turn. The connection is taken and given back inside
    that one thread call."""

    def call() -> T:
        with session_scope(settings) as session:
            return work(session)

    async with database_turn(state, settings):
        return await run_in_threadpool(call)
