"""Engine and sessions. One engine per database URL per process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from store.settings import Settings, get_settings

# In the embedded mode the API and the worker process share one SQLite file:
# WAL lets readers run beside the writer, and a generous busy timeout turns
# short write collisions into waits instead of "database is locked" errors.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}
_lock = threading.Lock()


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def pool_options(settings: Settings) -> dict:
    """Pool limits from the settings. The API admits at most pool_size + max_overflow
    requests to the database at once (api.dbgate), so a checkout there never waits."""
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }


def make_engine(url: str, settings: Settings | None = None) -> Engine:
    pool = pool_options(settings or get_settings())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = not parsed.database or parsed.database == ":memory:"
        if not in_memory:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            # An in-memory database lives in one connection: no pool to size.
            **({} if in_memory else pool),
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    url = settings.database_url
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url, settings)
        return _engines[url]


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    url = (settings or get_settings()).database_url
    engine = get_engine(settings)
    with _lock:
        if url not in _factories:
            _factories[url] = sessionmaker(engine, expire_on_commit=False)
        return _factories[url]


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close pooled connections (tests and forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()
