"""Where the built-in datasets are cached: one rule for the CLI, the engine and the
service settings (torch-free, so the settings can import it)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "LORITA_DATA_DIR"


def default_data_dir() -> Path:
    """$LORITA_DATA_DIR, else ~/.cache/lorita/data."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "lorita" / "data"
