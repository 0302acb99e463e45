"""405 answers whose Allow header names every method of the path.

FastAPI makes one route per method, and Starlette's 405 lists only the methods of
the first route whose path matched (GET /jobs/{id} answered a PUT with
`Allow: GET`, leaving out DELETE). This handler collects them from all routes.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """The methods some route answers for this path: each is tried against the app's
    routes as they match requests (routers included in routers too)."""
    allowed = []
    for method in METHOD_ORDER:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


async def method_not_allowed_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 405:
        methods = allowed_methods(request.app, dict(request.scope))
        if methods:
            error = StarletteHTTPException(
                405,
                detail=error.detail,
                headers={**(error.headers or {}), "Allow": ", ".join(methods)},
            )
    return await http_exception_handler(request, error)


def install_allow_handler(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, method_not_allowed_handler)
