"""Input refused at the edge, before any route or database sees it.

- NUL characters in the path, a query parameter or a JSON body string: PostgreSQL
  cannot store them in text columns (it raised a 500 on `/jobs/%00`, `?arch=%00`,
  `"upload:\\u0000"`); they are refused with 422 on every route and backend alike.
- JSON bodies larger than MAX_JSON_BYTES (job specs are a few hundred bytes): 413.

Multipart uploads pass through untouched (the upload code streams and checks them).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_BYTES = 1024 * 1024
NUL = "\x00"
NUL_MESSAGE = "NUL characters are not allowed"


def _error(status_code: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code)


def _nul_error(loc: list[str | int]) -> JSONResponse:
    return _error(422, [{"type": "string_pattern_mismatch", "loc": loc, "msg": NUL_MESSAGE}])


def nul_location(value: Any, loc: list[str | int]) -> list[str | int] | None:
    """Where in a decoded JSON document a NUL character sits (keys included), or None."""
    if isinstance(value, str):
        return loc if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return [*loc, key]
            found = nul_location(item, [*loc, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_location(item, [*loc, index])
            if found is not None:
                return found
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class EdgeGuard:
    """ASGI middleware applying the refusals above."""

    def __init__(self, app: ASGIApp, max_json_bytes: int = MAX_JSON_BYTES) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check_url(scope)
        if refusal is None and _is_json(scope):
            refusal, receive = await self.check_json_body(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def check_url(scope: Scope) -> JSONResponse | None:
        if NUL in scope.get("path", ""):
            return _nul_error(["path"])
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):
            if NUL in name or NUL in value:
                return _nul_error(["query", name.replace(NUL, "")])
        return None

    async def check_json_body(
        self, scope: Scope, receive: Receive
    ) -> tuple[JSONResponse | None, Receive]:
        too_large = _error(413, f"The JSON body is larger than {self.max_json_bytes} bytes.")
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_json_bytes:
            return too_large, receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, _replay(b"", receive, disconnected=True)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_json_bytes:
                return too_large, receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            document = json.loads(body)
        except ValueError:
            document = None  # not JSON: FastAPI answers 422 itself
        location = nul_location(document, ["body"])
        if location is not None:
            return _nul_error(location), receive
        return None, _replay(body, receive)


def _replay(body: bytes, receive: Receive, disconnected: bool = False) -> Receive:
    """A receive() that hands the app the body read already, then the real stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if disconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
