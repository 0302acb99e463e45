"""Schema version checks and upgrades (Alembic), usable without the alembic CLI."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from store.db import get_engine
from store.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class SchemaOutdated(RuntimeError):
    """The database schema is missing or older than the code."""


def alembic_config(settings: Settings | None = None) -> Config:
    settings = settings or get_settings()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def head_revision(settings: Settings | None = None) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()


def current_revision(settings: Settings | None = None) -> str | None:
    with get_engine(settings).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(settings: Settings | None = None) -> None:
    command.upgrade(alembic_config(settings), "head")


def ensure_schema(settings: Settings | None = None) -> None:
    """Upgrade (embedded mode) or refuse to run on an outdated database (deployment)."""
    settings = settings or get_settings()
    if settings.should_auto_migrate:
        upgrade_to_head(settings)
        return
    current, head = current_revision(settings), head_revision(settings)
    if current != head:
        state = "has no LoRITa tables" if current is None else f"is at revision {current}"
        raise SchemaOutdated(
            f"The database {_safe_url(settings)} {state}; this version needs revision {head}. "
            "Run `alembic upgrade head` (with the same DATABASE_URL) and start again."
        )


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)
