"""Dataset repository: the queries on uploaded datasets the API and the worker share.

A job refers to an upload as `upload:ID`; whoever resolves that reference (the API
when it validates a job, the worker when it runs one) asks here, and only ever
finds the uploads of the job's owner.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Dataset


def get_owned_dataset(session: Session, dataset_id: str, owner_id: int) -> Dataset | None:
    """The upload `dataset_id` when `owner_id` owns it, else None (unknown or someone else's)."""
    return session.scalar(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.owner_id == owner_id)
    )


def list_owned_datasets(session: Session, owner_id: int) -> list[Dataset]:
    """The owner's uploads, newest first."""
    return list(
        session.scalars(
            select(Dataset).where(Dataset.owner_id == owner_id).order_by(Dataset.created_at.desc())
        ).all()
    )
