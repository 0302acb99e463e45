"""Refuse dangerous zip files before anything is read from them.

Everything is decided from the central directory: no entry is extracted. The
declared sizes can be trusted while reading afterwards, because Python's
zipfile stops each entry at its declared size and checks its CRC.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from core.data.limits import DEFAULT_MAX_FILES, UploadLimitExceeded
from core.errors import DataError

# Real image/array data compresses a few times at most; a bomb compresses 1000x.
MAX_COMPRESSION_RATIO = 100
# Entries below this size cannot do harm whatever their ratio (blank images compress well).
RATIO_CHECK_MIN_BYTES = 1 << 20


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _unsafe_name(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "contains a '..' component"
    return None


def checked_entries(
    archive: zipfile.ZipFile,
    label: str,
    *,
    max_uncompressed_bytes: int,
    max_files: int = DEFAULT_MAX_FILES,
) -> list[zipfile.ZipInfo]:
    """The archive's file entries (folders left out) after every safety check."""
    infos = archive.infolist()
    files = [info for info in infos if not info.is_dir()]
    if len(files) > max_files:
        raise UploadLimitExceeded(f"{label} holds {len(files)} files; the limit is {max_files}")
    total = 0
    for info in infos:
        problem = _unsafe_name(info.filename)
        if problem:
            raise DataError(
                f"{label}: entry {info.filename!r} {problem}; zip the dataset folder with "
                "relative paths only"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(
                f"{label}: entry {info.filename!r} is a symbolic link; links are not "
                "accepted - zip the files themselves"
            )
        if info.flag_bits & 0x1:
            raise DataError(
                f"{label}: entry {info.filename!r} is encrypted; zip without a password"
            )
        total += info.file_size
        if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1
        ):
            raise DataError(
                f"{label}: entry {info.filename!r} expands from {_mb(info.compress_size)} to "
                f"{_mb(info.file_size)} (over {MAX_COMPRESSION_RATIO}x); this looks like a "
                "zip bomb and is refused"
            )
    if total > max_uncompressed_bytes:
        raise UploadLimitExceeded(
            f"{label} expands to {_mb(total)}; the limit is {_mb(max_uncompressed_bytes)} - "
            "upload a smaller dataset"
        )
    return files


def open_zip(path: Path, label: str, hint: str) -> zipfile.ZipFile:
    """Open a zip file or raise DataError(label is not a valid zip; hint)."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise DataError(f"{label} is not a valid zip file ({error}); {hint}") from error
