"""Liveness (/livez: the process answers) and readiness (/healthz: the database and
the broker answer, each named with its error when it does not)."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep
from store.settings import Settings

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 3
DATABASE_TIMEOUT_S = 3
_probes: dict[str, Engine] = {}


def probe_engine(settings: Settings) -> Engine:
    """A pool-less engine of its own: the check opens a fresh connection (so it sees an
    outage at once) and never queues behind requests for the API's pool."""
    url = settings.database_url
    if url not in _probes:
        timeout = {"timeout": DATABASE_TIMEOUT_S} if settings.is_sqlite else {}
        if url.startswith("postgresql"):
            timeout = {"connect_timeout": DATABASE_TIMEOUT_S}
        _probes[url] = create_engine(url, poolclass=NullPool, connect_args=timeout)
    return _probes[url]


def check_database(settings: Settings) -> str:
    try:
        with probe_engine(settings).connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"
    except Exception as error:
        return f"error: {type(error).__name__}: {str(error).splitlines()[0][:200]}"


def check_broker(settings: Settings) -> str:
    url = settings.broker_url
    try:
        if url.startswith(("redis://", "rediss://")):
            client = redis.Redis.from_url(url, socket_connect_timeout=BROKER_TIMEOUT_S)
            try:
                client.ping()
            finally:
                client.close()
        elif url.startswith("sqla+"):
            engine = create_engine(url.removeprefix("sqla+"), connect_args={"timeout": 5})
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            finally:
                engine.dispose()
        else:
            with Connection(url, connect_timeout=BROKER_TIMEOUT_S) as connection:
                connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
        return "ok"
    except Exception as error:
        return f"error: {type(error).__name__}: {str(error).splitlines()[0][:200]}"


HEALTH_EXAMPLE = {"status": "ok", "database": "ok", "broker": "ok"}


@router.get(
    "/healthz",
    responses={
        200: {"content": {"application/json": {"example": HEALTH_EXAMPLE}}},
        503: {
            "description": "A dependency is down: its field holds the error",
            "content": {
                "application/json": {
                    "example": {
                        "status": "unavailable",
                        "database": "error: OperationalError: connection refused",
                        "broker": "ok",
                    }
                }
            },
        },
    },
)
async def healthz(settings: SettingsDep):
    """200 when the database and the broker answer, 503 otherwise. No token needed."""
    database = await run_in_threadpool(check_database, settings)
    broker = await run_in_threadpool(check_broker, settings)
    healthy = database == "ok" and broker == "ok"
    down = [name for name, state in (("database", database), ("broker", broker)) if state != "ok"]
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "database": database, "broker": broker},
        status_code=200 if healthy else 503,
        headers={} if healthy else {"Retry-After": "5", "X-Unavailable": ", ".join(down)},
    )


@router.get(
    "/livez", responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}}
)
async def livez():
    """The process answers (nothing else is checked; no token needed)."""
    return {"status": "ok"}
