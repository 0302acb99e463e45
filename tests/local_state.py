"""Settings of a self-contained embedded-mode state folder (SQLite database and
broker, artifact, dataset and data folders under one root), for tests that need the
service's storage without PostgreSQL or Redis.

Every path is given explicitly, so a DATABASE_URL or other setting in the
environment never leaks into such a test."""

from __future__ import annotations

from pathlib import Path

from store.settings import Settings


def local_settings(root: Path) -> Settings:
    return Settings(
        state_dir=root,
        database_url=f"sqlite:///{root / 'lorita.db'}",
        broker_url=f"sqla+sqlite:///{root / 'broker.db'}",
        artifact_dir=root / "artifacts",
        dataset_dir=root / "datasets",
        data_dir=root / "data",
    )
