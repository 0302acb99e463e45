"""Request dependencies: settings, a database session, the signed-in user, and the
user's own job or dataset named in the path (404 for anyone else's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from api.errors import not_found
from store.datasets import get_owned_dataset
from store.db import session_factory
from store.jobs import get_owned_job
from store.models import Dataset, Job, User
from store.settings import Settings
from store.tokens import verify_token

# The dashboard signs in by exchanging a token for this HttpOnly cookie
# (POST /api/v1/session or /login?token=...); API clients send a bearer token.
SESSION_COOKIE = "lorita_token"


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = session_factory(settings)()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE)


def get_current_user(request: Request, session: SessionDep) -> User:
    token = request_token(request)
    user = verify_token(session, token) if token else None
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Missing or invalid token. Send 'Authorization: Bearer <token>' "
            "(create one with `lorita token create NAME`).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def owned_job(job_id: str, session: SessionDep, user: CurrentUser) -> Job:
    # Someone else's job answers 404 like a missing one: ids of others are not revealed.
    job = get_owned_job(session, job_id, user.id)
    if job is None:
        raise not_found("job")
    return job


OwnedJob = Annotated[Job, Depends(owned_job)]


def owned_dataset(dataset_id: str, session: SessionDep, user: CurrentUser) -> Dataset:
    row = get_owned_dataset(session, dataset_id, user.id)
    if row is None:
        raise not_found("dataset")
    return row


OwnedDataset = Annotated[Dataset, Depends(owned_dataset)]
