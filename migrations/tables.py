"""Table pieces the migrations share: a child row's cascading key, a user's upload.

Frozen history: a migration that calls a helper here relies on the exact DDL the
helper emits now, so a helper is never changed once a migration uses it; a new
need gets a new helper. Names follow store.models.NAMING_CONVENTION.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def cascade_from(table: str, key: str, parent: str) -> sa.ForeignKeyConstraint:
    """`table.key` references `parent.id`; the rows go when their parent row goes."""
    return sa.ForeignKeyConstraint(
        [key], [f"{parent}.id"], name=op.f(f"fk_{table}_{key}_{parent}"), ondelete="CASCADE"
    )


def primary_key(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}"))


def created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def create_upload_table(table: str, *columns: sa.Column) -> None:
    """A table of files users upload: a UUID key, the owner (indexed, the rows go with
    the user), the name it is shown under, the file name it came with, then `columns`,
    then when it arrived (store.models.OwnedUpload)."""
    op.create_table(
        table,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        *columns,
        created_at(),
        cascade_from(table, "owner_id", "users"),
        primary_key(table),
    )
    op.create_index(op.f(f"ix_{table}_owner_id"), table, ["owner_id"], unique=False)


def drop_upload_table(table: str) -> None:
    op.drop_index(op.f(f"ix_{table}_owner_id"), table_name=table)
    op.drop_table(table)
