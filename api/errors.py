"""Error bodies in FastAPI's validation format, and 422 messages a person can act on.

Every 422 keeps FastAPI's shape, `{"detail": [{"type", "loc", "msg", ...}]}`, so
clients can still read `loc` and `type`; only `msg` is reworded where pydantic's
own text leaves the reader guessing: an unknown field lists the allowed names and
the closest one, and the "Value error, " prefix of our own validators goes.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.spec import did_you_mean

VALUE_ERROR_PREFIX = "Value error, "


def field_error(loc: list[str | int], message: str) -> HTTPException:
    """422 naming the field, shaped like FastAPI's own validation errors."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"type": "value_error", "loc": ["body", *loc], "msg": message}],
    )


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


# --------------------------------------------------------------- request validation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (X, X | None, list[X], dict[str, X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def model_at(model: type[BaseModel] | None, path: list[Any]) -> type[BaseModel] | None:
    """The model that validates the object at `path` inside a `model` document."""
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):  # an index into a list: the same item model
            continue
        field = model.model_fields.get(part)
        models = _models_in(field.annotation) if field is not None else []
        model = models[0] if len(models) == 1 else None
    return model


def unknown_field_message(name: str, allowed: list[str]) -> str:
    """The message for an unknown key, e.g. "unknown field 'epoch'; did you mean 'epochs'?
    allowed: epochs, batch_size, ..."."""
    return f"unknown field {name!r}; {did_you_mean(name, allowed)}allowed: {', '.join(allowed)}"


def readable_error(error: dict[str, Any], body_model: type[BaseModel] | None) -> dict[str, Any]:
    """One pydantic error with an actionable `msg` (the other keys unchanged)."""
    error = dict(error)
    loc = list(error.get("loc", ()))
    message = str(error.get("msg", ""))
    if error.get("type") == "extra_forbidden" and loc[:1] == ["body"] and len(loc) >= 2:
        parent = model_at(body_model, loc[1:-1])
        if parent is not None:
            message = unknown_field_message(str(loc[-1]), list(parent.model_fields))
    if message.startswith(VALUE_ERROR_PREFIX):
        message = message[len(VALUE_ERROR_PREFIX) :]
    error["msg"] = message
    return error


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the matched route's JSON body, if it has one."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    models = _models_in(annotation)
    return models[0] if len(models) == 1 else None


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    model = _body_model(request)
    detail = [readable_error(item, model) for item in error.errors()]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": jsonable_encoder(detail)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
