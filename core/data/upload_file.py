"""The first check on any uploaded file (a dataset, model weights), before it is
opened: it is there, and no larger than the limit."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import DataError


def checked_size(
    path: Path,
    max_bytes: int,
    *,
    label: str,
    missing: type[DataError] = DataError,
    too_large: type[DataError] = DataError,
) -> int:
    """The size of `path` in bytes; `missing` ("LABEL does not exist") when it is not a
    file, `too_large` when it has more than `max_bytes`."""
    if not path.is_file():
        raise missing(f"{label} does not exist")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise too_large(
            f"{path.name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
        )
    return size
