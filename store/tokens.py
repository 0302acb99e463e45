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


class TokenExists(Exception):
    """User NAME already has a token; a second one needs `--add`."""


def tokens_of(session: Session, user_name: str | None = None) -> list[ApiToken]:
    """Tokens (of one user, or all), oldest first, each with its user loaded."""
    query = select(ApiToken).join(User).order_by(ApiToken.created_at, ApiToken.id)
    if user_name is not None:
        query = query.where(User.name == user_name)
    rows = list(session.scalars(query).all())
    for row in rows:
        _ = row.user.name
    return rows


def find_token(session: Session, reference: str) -> ApiToken | None:
    """A token by its id (as `lorita token list` shows it) or its printed prefix."""
    reference = reference.strip()
    if reference.isascii() and reference.isdigit():
        return session.get(ApiToken, int(reference))
    matches = session.scalars(select(ApiToken).where(ApiToken.prefix == reference[:12])).all()
    return matches[0] if len(matches) == 1 and reference.startswith(matches[0].prefix) else None


def revoke_token(session: Session, reference: str) -> ApiToken | None:
    """Delete a token: requests and browser sessions using it get 401 from now on."""
    row = find_token(session, reference)
    if row is not None:
        _ = row.user.name
        session.delete(row)
        session.flush()
    return row


def create_token_cli(name: str, settings=None, *, add: bool = False) -> str:
    """`lorita token create NAME`: make user NAME a token and print it (shown only once).
    A user who has one already gets another only with add=True (`--add`)."""
    from store.db import session_scope
    from store.migrate import ensure_schema

    ensure_schema(settings)
    with session_scope(settings) as session:
        existing = tokens_of(session, name)
        if existing and not add:
            raise TokenExists(
                f"user {name!r} already has {len(existing)} token(s) "
                f"({', '.join(row.prefix + '...' for row in existing)}). "
                "Use `lorita token create --add NAME` for another one, or "
                "`lorita token revoke ID` to retire one (`lorita token list` shows them)."
            )
        token = create_token(session, name)
    print(token)
    return token


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


def list_tokens_cli(user_name: str | None = None, settings=None) -> list[ApiToken]:
    """`lorita token list [NAME]`: id, user, name, prefix, created and last use."""
    from store.db import session_scope
    from store.migrate import ensure_schema

    ensure_schema(settings)
    with session_scope(settings) as session:
        rows = tokens_of(session, user_name)
    header = ("id", "user", "name", "prefix", "created", "last used")
    lines = [header] + [
        (
            str(row.id),
            row.user.name,
            row.name,
            row.prefix + "...",
            _when(row.created_at),
            _when(row.last_used_at),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    if not rows:
        print("(no tokens)")
    return rows


def revoke_token_cli(reference: str, settings=None) -> bool:
    """`lorita token revoke ID|PREFIX`: delete one token; False when none matches."""
    from store.db import session_scope
    from store.migrate import ensure_schema

    ensure_schema(settings)
    with session_scope(settings) as session:
        row = revoke_token(session, reference)
        if row is None:
            print(f"no token {reference!r} (see `lorita token list`)")
            return False
        print(f"revoked token {row.id} ({row.prefix}...) of user {row.user.name!r}")
    return True
