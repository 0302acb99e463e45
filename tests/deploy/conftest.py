"""Fixtures of the deployment tests; the readers are in deployfiles.py."""

from __future__ import annotations

import pytest
import yaml
from deployfiles import API_DOCKERFILE, COMPOSE_FILE, WORKER_DOCKERFILE, Dockerfile, read_dockerfile


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="session")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="session")
def api_dockerfile() -> Dockerfile:
    return read_dockerfile(API_DOCKERFILE)


@pytest.fixture(scope="session")
def worker_dockerfile() -> Dockerfile:
    return read_dockerfile(WORKER_DOCKERFILE)
