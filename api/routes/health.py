"""Liveness and readiness: the database and the broker answer."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import create_engine, text
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep
from store.db import get_engine
from store.settings import Settings

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 3


def check_database(settings: Settings) -> str:
    try:
        with get_engine(settings).connect() as connection:
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


@router.get("/healthz")
async def healthz(settings: SettingsDep):
    """200 when the database and the broker answer, 503 otherwise. No token needed."""
    database = await run_in_threadpool(check_database, settings)
    broker = await run_in_threadpool(check_broker, settings)
    healthy = database == "ok" and broker == "ok"
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "database": database, "broker": broker},
        status_code=200 if healthy else 503,
    )
