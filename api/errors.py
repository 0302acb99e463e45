"""Error bodies in FastAPI's validation format, for checks made outside pydantic."""

from __future__ import annotations

from fastapi import HTTPException, status


def field_error(loc: list[str | int], message: str) -> HTTPException:
    """422 naming the field, shaped like FastAPI's own validation errors."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"type": "value_error", "loc": ["body", *loc], "msg": message}],
    )


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")
