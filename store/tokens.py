"""API tokens: random secrets shown once; the database keeps only their SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ApiToken, User, utcnow

TOKEN_PREFIX = "lrt_"
# Recording every use would turn each read request into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def get_or_create_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name)
        session.add(user)
        session.flush()
    return user


def create_token(session: Session, name: str, *, user_name: str | None = None) -> str:
    """Create a token for user `user_name` (default: `name`); return the plain token once."""
    user = get_or_create_user(session, user_name or name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(user_id=user.id, name=name, token_hash=hash_token(token), prefix=token[:12])
    )
    session.flush()
    return token


def verify_token(session: Session, token: str) -> User | None:
    """The token's user, or None. Records the last use (at most once a minute)."""
    if not token:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return row.user


def create_token_cli(name: str, settings=None) -> str:
    """`lorita token create NAME`: make user NAME a token and print it (shown only once)."""
    from store.db import session_scope
    from store.migrate import ensure_schema

    ensure_schema(settings)
    with session_scope(settings) as session:
        token = create_token(session, name)
    print(token)
    return token
