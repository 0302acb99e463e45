"""A migrated SQLite database and two independent sessions on it: enough to play
both sides of a race (API and worker, or two workers) without PostgreSQL or Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from store import jobs as repo
from store.db import dispose_engines, session_factory
from store.migrate import ensure_schema
from store.models import Job
from store.settings import Settings
from store.tokens import get_or_create_user
from tests.local_state import local_settings

SPEC = {"model": {"arch": "fcn"}, "data": {"dataset": "digits"}, "lorita": {"factor": 3}}
QUEUE = "lorita"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = local_settings(tmp_path_factory.mktemp("store"))
    ensure_schema(settings)  # the migrations, as in the embedded mode
    yield settings
    dispose_engines()


@pytest.fixture
def open_session(settings: Settings) -> Iterator[Callable[[], Session]]:
    """Sessions of their own, like two processes; closed after the test."""
    opened: list[Session] = []

    def open_() -> Session:
        session = session_factory(settings)()
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.rollback()
        session.close()


@pytest.fixture
def queued_job(open_session) -> str:
    """A committed queued job of a user of its own; returns its id."""
    with open_session() as session:
        user = get_or_create_user(session, f"user-{uuid.uuid4().hex[:8]}")
        job = repo.create_job(session, user.id, SPEC, queue=QUEUE)
        session.commit()
        return job.id


def read_job(open_session, job_id: str) -> Job | None:
    """The job as committed, read by a session of its own."""
    with open_session() as session:
        return session.get(Job, job_id)


def event_states(open_session, job_id: str) -> list[str]:
    """The statuses of the job's "state" events, oldest first."""
    with open_session() as session:
        return [
            event.data["status"]
            for event in repo.events_after(session, job_id, 0)
            if event.type == "state"
        ]
