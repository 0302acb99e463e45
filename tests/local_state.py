"""Settings of a self-contained embedded-mode state folder (SQLite database and
broker, artifact, dataset and data folders under one root), for tests that need the
service's storage without PostgreSQL or Redis; and the environment of the service
processes a test starts.

Every path is given explicitly, so a DATABASE_URL or other setting in the
environment never leaks into such a test."""

from __future__ import annotations

import os
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


# The folder settings of a service process, as environment variables: a folder each.
SERVICE_FOLDERS = {
    "STATE_DIR": "state",
    "ARTIFACT_DIR": "artifacts",
    "DATASET_DIR": "datasets",
    "DATA_DIR": "data",
}


def service_env(root: Path, **settings: str) -> dict[str, str]:
    """The environment of a service process (API, worker, a one-off command) a test
    starts: the caller's environment without any of the service's settings or LORITA_
    variables, so a developer's DATABASE_URL or data folder never leaks in; the
    SERVICE_FOLDERS under `root` (like compose's named volumes); unbuffered logs; one
    OpenMP thread (the test processes share few cores); then `settings`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in Settings.model_fields and not key.startswith("LORITA_")
    }
    env.update({name: str(root / folder) for name, folder in SERVICE_FOLDERS.items()})
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **settings)
    return env
