"""Request dependencies: settings, a database session, the signed-in user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from store.db import session_factory
from store.models import User
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
