"""Request dependencies: settings, a database session, the signed-in user, and the
user's own job or dataset named in the path (404 for anyone else's).

No pooled connection is held while a request waits for a worker thread: every
database call takes a turn (api.dbgate) in the event loop first, and its
connection is taken and given back inside one thread call. CurrentUser and
OwnedJob run in short sessions of their own (or in the request's SessionDep
session, when the route declared one first), so a route that only needs them,
an event stream or an upload, holds no session while it runs. A handler that
reads with SessionDep ends its transaction (`session.commit()`) before it builds
its answer; the session's turn ends with the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.dbgate import database_turn, run_in_session
from api.errors import not_found
from api.upload_rows import owned_or_404
from store.datasets import owned_datasets
from store.db import session_factory
from store.jobs import get_owned_job
from store.models import Dataset, Job, User
from store.settings import Settings
from store.tokens import verify_token

T = TypeVar("T")

# The dashboard signs in by exchanging a token for this HttpOnly cookie
# (POST /api/v1/session, from the sign-in page); API clients send a bearer token.
SESSION_COOKIE = "lorita_token"


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_session(request: Request, settings: SettingsDep) -> AsyncIterator[Session]:
    """A session for the whole request, during one database turn."""
    async with database_turn(request.app.state, settings):
        session = session_factory(settings)()
        request.state.db_session = session
        try:
            yield session
        finally:
            request.state.db_session = None
            with anyio.CancelScope(shield=True):
                await close_session(session)


async def close_session(session: Session) -> None:
    """Close without waiting for a pool thread: a session still in a transaction rolls
    back over the network, so it gets a thread outside the limit (as FastAPI does for
    the exit of sync dependencies); one without a transaction closes at once."""
    if session.in_transaction():
        await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))
    else:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def run_for_request(request: Request, settings: Settings, work: Callable[[Session], T]) -> T:
    """`work(session)` in a worker thread: in the request's own session when it has one
    (its turn is already held: taking a second one could deadlock), else in a short
    session with a turn of its own. The transaction ends before the thread returns."""
    session = getattr(request.state, "db_session", None)
    if session is None:
        return await run_in_session(request.app.state, settings, work)

    def call() -> T:
        try:
            result = work(session)
            session.commit()
            return result
        except BaseException:
            session.rollback()
            raise

    return await run_in_threadpool(call)


def request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE)


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Missing or invalid token. Send 'Authorization: Bearer <token>' "
        "(create one with `lorita token create NAME`).",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_current_user(request: Request, settings: SettingsDep) -> User:
    token = request_token(request)
    if not token:
        raise unauthorized()
    # The user comes back loaded (expire_on_commit=False) and detached from the session.
    user = await run_for_request(request, settings, lambda session: verify_token(session, token))
    if user is None:
        raise unauthorized()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def owned_job(job_id: str, request: Request, settings: SettingsDep, user: CurrentUser) -> Job:
    """The user's job, loaded. A handler that changes it reads it again in its own
    session (`session.get(Job, job.id)`)."""
    # Someone else's job answers 404 like a missing one: ids of others are not revealed.
    job = await run_for_request(
        request, settings, lambda session: get_owned_job(session, job_id, user.id)
    )
    if job is None:
        raise not_found("job")
    return job


OwnedJob = Annotated[Job, Depends(owned_job)]


def owned_dataset(dataset_id: str, session: SessionDep, user: CurrentUser) -> Dataset:
    return owned_or_404(session, owned_datasets, dataset_id, user, "dataset")


OwnedDataset = Annotated[Dataset, Depends(owned_dataset)]
