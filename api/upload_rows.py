"""The user's uploads (datasets, model weights) as the routes serve them: the
owner's row or 404, its fields for the answer, and its removal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Response, status
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from api.errors import not_found
from core.catalog import upload_reference
from store.models import OwnedUpload, User
from store.uploads import OwnedUploads

U = TypeVar("U", bound=OwnedUpload)


def owned_or_404(
    session: Session, uploads: OwnedUploads[U], upload_id: str, user: User, what: str
) -> U:
    """The user's upload, attached to the request's session (handlers delete it there)."""
    row = uploads.get(session, upload_id, user.id)
    session.commit()  # the row is loaded: end the transaction before the answer is built
    # Someone else's upload answers 404 like a missing one: ids of others are not revealed.
    if row is None:
        raise not_found(what)
    return row


def upload_fields(row: OwnedUpload) -> dict[str, Any]:
    """The row's columns by name, and the reference a job names the upload by."""
    columns = {attr.key: getattr(row, attr.key) for attr in inspect(row).mapper.column_attrs}
    return {**columns, "reference": upload_reference(row.id)}


def delete_upload(session: Session, row: OwnedUpload, remove_file: Callable[[], None]) -> Response:
    """Forget the upload, then remove its file: a failure in between leaves a stray
    file behind, never a row whose file is gone."""
    session.delete(row)
    session.commit()
    remove_file()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
