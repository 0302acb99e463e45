"""503 with Retry-After when the database is down or busy, on every route.

A stopped PostgreSQL (or a locked SQLite file) raises OperationalError or a
disconnect from anywhere a route touches the database; without this handler
each was a bare 500. Other database errors stay 500s: they are bugs.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.dbgate import DatabaseBusy

DOWN_RETRY_AFTER_S = 5
BUSY_RETRY_AFTER_S = 1


def unavailable(detail: str, retry_after_s: int) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after_s)}
    )


def is_outage(error: BaseException) -> bool:
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


async def database_error_handler(request: Request, error: Exception) -> JSONResponse:
    if not is_outage(error):
        raise error
    return unavailable("The database is unavailable; retry shortly.", DOWN_RETRY_AFTER_S)


async def database_busy_handler(request: Request, error: Exception) -> JSONResponse:
    return unavailable("The database is busy; retry shortly.", BUSY_RETRY_AFTER_S)


def install_unavailable_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, database_error_handler)
    app.add_exception_handler(DatabaseBusy, database_busy_handler)
    app.add_exception_handler(PoolTimeout, database_busy_handler)
