"""The OpenAPI document: every status code each route answers, and the catalog's names.

FastAPI documents a route's success and its 422; the rest is declared here once,
from rules that hold for every route (the token check, the database, paths with
an id, request bodies), so new routes are documented without repeating them.
Route-specific answers (409, 202) are declared on the routes with the helpers
below. The spec's `model.arch` and `data.dataset` get the names the catalog
accepts, so a client generated from the document can only send known ones.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from core.catalog import REGISTRY, UPLOAD_PREFIX, available_datasets, is_known_arch


class ErrorOut(BaseModel):
    """The body of every error: a sentence, or FastAPI's list of field errors (422)."""

    detail: str | list[dict[str, Any]] = Field(description="what went wrong")


def error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


CONFLICT = {409: error("The job's state does not allow this")}
UNAVAILABLE = "The database is unavailable or busy; retry after Retry-After seconds."


def responses(*codes: int, description_503: str = UNAVAILABLE) -> dict[int | str, Any]:
    """Declarations for `responses=` of a route, e.g. responses(503)."""
    descriptions = {503: description_503}
    return {code: error(descriptions.get(code, "")) for code in codes}


# Answered without a token.
PUBLIC = {"/healthz", "/livez", "/api/v1/healthz", "/api/v1/livez"}
# Neither the token nor the database is consulted.
NO_DATABASE = {("delete", "/api/v1/session"), ("get", "/livez"), ("get", "/api/v1/livez")}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def _add(operation: dict[str, Any], code: int, description: str, schema: dict | None) -> None:
    answers = operation.setdefault("responses", {})
    entry = answers.setdefault(str(code), {"description": description})
    if not entry.get("description"):
        entry["description"] = description
    if schema is not None and "content" not in entry:
        entry["content"] = {"application/json": {"schema": schema}}


def declare_common_answers(path: str, method: str, operation: dict[str, Any]) -> None:
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    validation_ref = {"$ref": "#/components/schemas/HTTPValidationError"}
    if path not in PUBLIC and (method, path) != ("delete", "/api/v1/session"):
        _add(operation, 401, "Missing or invalid token", error_ref)
    if (method, path) not in NO_DATABASE:
        _add(operation, 503, UNAVAILABLE, error_ref)
        operation["responses"]["503"].setdefault("headers", RETRY_AFTER)
    if "{" in path:
        _add(operation, 404, "Not found, or not yours", error_ref)
    # NUL characters and out-of-range values are refused on every route (api.edge).
    _add(operation, 422, "Validation Error", validation_ref)
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        _add(operation, 413, "The request body is too large", error_ref)
    if "multipart/form-data" in body:
        _add(operation, 415, "Unsupported file type", error_ref)


def known_archs() -> list[str]:
    names = list(REGISTRY.names())
    for prefix in REGISTRY.prefixes.values():
        names += [prefix.prefix + name for name in sorted(prefix.names)]
    return [name for name in names if is_known_arch(name)]


def add_catalog_enums(schemas: dict[str, Any]) -> None:
    for name, schema in schemas.items():
        properties = schema.get("properties", {})
        if name.startswith("ModelSpec") and "arch" in properties:
            properties["arch"]["enum"] = known_archs()
        if name.startswith("DataSpec") and "dataset" in properties:
            properties["dataset"]["anyOf"] = [
                {"enum": list(available_datasets())},
                {"pattern": f"^{UPLOAD_PREFIX}[0-9a-f-]{{36}}$"},
            ]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "ErrorOut", ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    schemas.setdefault(
        "HTTPValidationError",
        {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {"detail": {"type": "array", "items": {"type": "object"}}},
        },
    )
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            declare_common_answers(path, method, operation)
    add_catalog_enums(schemas)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
