"""Service settings: one class, read from environment variables (no prefix).

The defaults are the embedded mode: a SQLite database, a broker kept in a
SQLite file, artifacts and uploads in a local state folder. Deployment sets
DATABASE_URL to PostgreSQL and BROKER_URL to Redis; nothing else changes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.paths import default_data_dir


def default_state_dir() -> Path:
    """Where the embedded mode keeps its database, broker, artifacts and token."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lorita"


class Settings(BaseSettings):
    # Each field reads the environment variable of its name in capitals (DATABASE_URL,
    # ...): pydantic-settings matches names case-insensitively, so no aliases are needed.
    # The docstring under a field is its description (use_attribute_docstrings).
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", use_attribute_docstrings=True
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    """Local state folder of the embedded mode (SQLite files, artifacts, uploads, the local
    sign-in token). Default: $XDG_DATA_HOME/lorita or ~/.local/share/lorita."""
    database_url: str = ""
    """SQLAlchemy URL of the job database, e.g.
    postgresql+psycopg://lorita:secret@db:5432/lorita. Default: SQLite file STATE_DIR/lorita.db."""
    broker_url: str = ""
    """Celery broker URL, e.g. redis://redis:6379/0. Default: an embedded broker kept in the
    SQLite file STATE_DIR/broker.db (sqla+sqlite://), no server needed."""
    artifact_dir: Path | None = None
    """Folder for job artifacts and per-job training checkpoints; workers on other machines
    must see the same folder (shared volume) to resume each other's jobs.
    Default: STATE_DIR/artifacts."""
    dataset_dir: Path | None = None
    """Folder for uploaded datasets (shared by API and workers). Default: STATE_DIR/datasets."""
    data_dir: Path = Field(default_factory=default_data_dir)
    """Cache of built-in datasets (digits, mnist, ...). Default: LORITA_DATA_DIR or
    ~/.cache/lorita/data."""
    upload_max_bytes: int = Field(512 * 1024**2, ge=1)
    """Largest dataset upload accepted, in bytes (checked while streaming)."""
    upload_max_uncompressed_bytes: int = Field(4 * 1024**3, ge=1)
    """Largest total uncompressed size of an uploaded .npz/.zip (zip bomb guard)."""
    upload_max_decoded_bytes: int = Field(512 * 1024**2, ge=1)
    """Largest size of an upload's images once decoded (images x H x W x C bytes, from the
    image headers or .npy headers, checked before decoding); workers hold them as float32,
    up to 4x this."""
    upload_max_samples: int = Field(1_000_000, ge=1)
    """Most images (train + test) an uploaded dataset may hold."""
    upload_max_classes: int = Field(1000, ge=2)
    """Most classes an uploaded dataset may have (labels 0..K-1)."""
    worker_device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """Device a worker trains on: auto (CUDA when present), cpu, cuda or cuda:N."""
    queue_name: str = "lorita"
    """Broker queue the API publishes jobs to and workers consume."""
    broker_key_prefix: str = ""
    """Prefix for every Redis key the broker uses (to share one Redis)."""
    broker_visibility_timeout_s: int = Field(12 * 3600, ge=60)
    """Redis: seconds before an unacknowledged job message is delivered again. Longer than
    the longest job; dead workers are detected sooner by heartbeats."""
    job_heartbeat_s: float = Field(10.0, gt=0)
    """How often a worker records that its running job is alive."""
    job_stale_after_s: float = Field(120.0, gt=0)
    """A running job whose heartbeat is older than this is taken as orphaned (its worker
    died) and queued again; it resumes from its last checkpoint."""
    job_max_attempts: int = Field(3, ge=1)
    """A job whose worker died this many times is failed instead of requeued."""
    auto_migrate: bool | None = None
    """Run `alembic upgrade head` on start. Default: on for SQLite (embedded), off otherwise
    (the API then refuses to start on an outdated database)."""
    public_url: str = ""
    """External base URL of the API (e.g. https://lorita.example.org), used in printed
    sign-in links. Default: http://HOST:PORT of `lorita serve`."""
    cookie_secure: bool = False
    """Mark the dashboard sign-in cookie Secure (set when served over HTTPS)."""
    db_pool_size: int = Field(10, ge=1)
    """Database connections each process keeps open (SQLAlchemy pool_size)."""
    db_max_overflow: int = Field(10, ge=0)
    """Connections opened beyond DB_POOL_SIZE under load and closed after. The API lets at
    most DB_POOL_SIZE + DB_MAX_OVERFLOW requests use the database at once; the others wait
    without holding a thread or a connection."""
    db_pool_timeout_s: float = Field(10.0, gt=0)
    """Longest wait for a database connection (API: for a turn at the database); past it
    the request is answered 503 with Retry-After."""
    api_threads: int = Field(40, ge=2)
    """Worker threads of the API process for blocking work (database calls, file reads).
    Must exceed DB_POOL_SIZE + DB_MAX_OVERFLOW, so requests that do not use the database
    always find a thread."""
    sse_heartbeat_s: float = Field(15.0, gt=0)
    """Seconds between keep-alive comments on an idle event stream."""
    log_level: str = "INFO"
    """Log level of API and workers."""

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        state = self.state_dir.expanduser()
        self.state_dir = state
        if not self.database_url:
            self.database_url = f"sqlite:///{state / 'lorita.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{state / 'broker.db'}"
        if self.artifact_dir is None:
            self.artifact_dir = state / "artifacts"
        if self.dataset_dir is None:
            self.dataset_dir = state / "datasets"
        self.artifact_dir = self.artifact_dir.expanduser()
        self.dataset_dir = self.dataset_dir.expanduser()
        self.data_dir = self.data_dir.expanduser()
        return self

    @model_validator(mode="after")
    def _threads_cover_the_pool(self) -> Settings:
        if self.api_threads <= self.db_connection_limit:
            raise ValueError(
                f"API_THREADS ({self.api_threads}) must be larger than DB_POOL_SIZE + "
                f"DB_MAX_OVERFLOW ({self.db_connection_limit})"
            )
        return self

    @property
    def db_connection_limit(self) -> int:
        """Most connections one process opens; the API's database turns (api.dbgate)."""
        return self.db_pool_size + self.db_max_overflow

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def token_file(self) -> Path:
        """Plain-text local sign-in token of the embedded mode (mode 0600)."""
        return self.state_dir / "local-token"


@lru_cache
def get_settings() -> Settings:
    return Settings()
