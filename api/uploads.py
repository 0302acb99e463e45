"""Receive an upload into a file while counting bytes, so an oversized upload is
refused after at most `max_bytes` were written (never buffered whole).

Accepts multipart/form-data (`curl -F file=@x.npz`) with an optional `name` field,
or a raw body with the file name in `?filename=`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, status
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part
MAX_NAME_FIELD = 255
MAX_FIELDS = 16  # text fields kept beside the file (name, arch, ...); more are ignored
DISPLAY_NAME = {"type": "string", "description": "Display name"}


class UploadTooLarge(Exception):
    pass


@dataclass
class Received:
    filename: str
    size: int
    name: str | None
    # The other short text fields of the form (each cut at MAX_NAME_FIELD bytes).
    fields: dict[str, str] = field(default_factory=dict)


def upload_form(
    file_description: str | None = None,
    fields: dict[str, dict[str, Any]] | None = None,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`openapi_extra` of a route that takes an upload: the multipart form that
    receive_upload reads, a binary `file`, the route's own `fields`, a display `name`."""
    file: dict[str, Any] = {"type": "string", "format": "binary"}
    if file_description:
        file["description"] = file_description
    properties = {"file": file, **(fields or {}), "name": DISPLAY_NAME}
    schema = {"type": "object", "required": ["file", *required], "properties": properties}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


def too_large(max_bytes: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"Upload larger than the limit of {max_bytes} bytes (UPLOAD_MAX_BYTES).",
    )


async def receive_upload(request: Request, target: Path, max_bytes: int) -> Received:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_SLACK:
        raise too_large(max_bytes)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    try:
        if content_type == b"multipart/form-data":
            boundary = options.get(b"boundary")
            if not boundary:
                raise HTTPException(400, detail="multipart body without a boundary")
            return await _receive_multipart(request, target, max_bytes, boundary)
        return await _receive_raw(request, target, max_bytes)
    except UploadTooLarge:
        raise too_large(max_bytes) from None
    except MultipartParseError as error:
        raise HTTPException(400, detail=f"Malformed multipart body: {error}") from None


async def _receive_raw(request: Request, target: Path, max_bytes: int) -> Received:
    filename = request.query_params.get("filename", "")
    if not filename:
        raise HTTPException(
            400,
            detail="Send multipart/form-data with a 'file' part, or the raw file with "
            "?filename=NAME.npz",
        )
    size = 0
    with open(target, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge
            out.write(chunk)
    fields = {k: v[:MAX_NAME_FIELD] for k, v in list(request.query_params.items())[:MAX_FIELDS]}
    return Received(
        filename=filename, size=size, name=request.query_params.get("name"), fields=fields
    )


async def _receive_multipart(
    request: Request, target: Path, max_bytes: int, boundary: bytes
) -> Received:
    state = {"size": 0, "filename": None, "field": None, "in_file": False, "done_file": False}
    header_field, header_value = bytearray(), bytearray()
    headers: dict[bytes, bytes] = {}
    name_value = bytearray()
    text_fields: dict[str, bytearray] = {}
    out = open(target, "wb")  # noqa: SIM115 (closed below)

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        field = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        state["field"] = field
        # The first part with a file name is the dataset; later files are ignored.
        state["in_file"] = filename is not None and not state["done_file"]
        if state["in_file"]:
            state["filename"] = filename.decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            state["size"] += end - start
            if state["size"] > max_bytes:
                raise UploadTooLarge
            out.write(data[start:end])
        elif state["field"] == "name" and len(name_value) < MAX_NAME_FIELD:
            name_value.extend(data[start:end][: MAX_NAME_FIELD - len(name_value)])
        elif state["field"] and (state["field"] in text_fields or len(text_fields) < MAX_FIELDS):
            value = text_fields.setdefault(state["field"], bytearray())
            value.extend(data[start:end][: MAX_NAME_FIELD - len(value)])

    def on_part_end() -> None:
        if state["in_file"]:
            state["done_file"] = True
        state["in_file"] = False

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    finally:
        out.close()
    if not state["done_file"] or not state["filename"]:
        raise HTTPException(400, detail="No file in the upload: send it as the 'file' part.")
    name = name_value.decode("utf-8", "replace").strip() or None
    fields = {k: v.decode("utf-8", "replace").strip() for k, v in text_fields.items()}
    return Received(filename=state["filename"], size=state["size"], name=name, fields=fields)
