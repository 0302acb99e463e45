"""Queries every kind of upload shares (datasets, model weights).

A job refers to an upload as `upload:ID`; whoever resolves that reference (the API
when it validates a job, the worker when it runs one) only ever finds the uploads
of the job's owner.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import OwnedUpload

U = TypeVar("U", bound=OwnedUpload)


class OwnedUploads(Generic[U]):
    """The owner's rows of one kind of upload (`OwnedUploads(Dataset)`)."""

    def __init__(self, kind: type[U]):
        self.kind = kind

    def get(self, session: Session, upload_id: str, owner_id: int) -> U | None:
        """The upload `upload_id` when `owner_id` owns it, else None (unknown or someone
        else's)."""
        kind = self.kind
        return session.scalar(select(kind).where(kind.id == upload_id, kind.owner_id == owner_id))

    def list(self, session: Session, owner_id: int) -> list[U]:
        """The owner's uploads, newest first."""
        kind = self.kind
        query = select(kind).where(kind.owner_id == owner_id).order_by(kind.created_at.desc())
        return list(session.scalars(query).all())
