"""The schema comes from Alembic, matches the models, and is enforced on start."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store.migrate import SchemaOutdated
from store.settings import Settings

from .conftest import run_alembic

pytestmark = pytest.mark.service


def test_upgrade_head_on_empty_postgres_then_no_drift(make_database):
    url = make_database()
    upgraded = run_alembic(url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade  -> 0001" in upgraded.stderr

    checked = run_alembic(url, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_api_refuses_unmigrated_database(make_database, tmp_path):
    settings = Settings(
        state_dir=tmp_path, database_url=make_database(), broker_url="memory://", auto_migrate=False
    )
    with (
        pytest.raises(SchemaOutdated, match="alembic upgrade head"),
        TestClient(create_app(settings)),
    ):
        pass


def test_embedded_sqlite_migrates_itself(tmp_path):
    settings = Settings(state_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json()["database"] == "ok"
    assert (tmp_path / "lorita.db").is_file()
