"""Where job artifacts and uploaded datasets live.

`ArtifactStore` is the interface the API and the worker use; `LocalArtifactStore`
keeps files in a folder (the default). An object-storage store only needs the same
four methods (and a download route that redirects instead of sending a local file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from store.settings import Settings, get_settings

CONTENT_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".safetensors": "application/octet-stream",
    ".onnx": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}


def content_type_for(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _checked_id(value: str) -> str:
    # Ids become folder names: only canonical UUIDs are accepted, so no id can
    # point outside the store.
    return str(uuid.UUID(value))


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    size_bytes: int
    content_type: str


class ArtifactStore(Protocol):
    def put_dir(self, job_id: str, source: Path) -> list[ArtifactInfo]:
        """Store every file directly inside `source` as the job's artifacts."""

    def list(self, job_id: str) -> list[ArtifactInfo]: ...

    def path(self, job_id: str, name: str) -> Path:
        """The local file of one artifact, to be served as is (Range, ETag).
        Raises FileNotFoundError for an unknown name."""

    def delete(self, job_id: str) -> None:
        """Remove every file of the job (artifacts and scratch data)."""


class LocalArtifactStore:
    """Artifacts in ROOT/<job>/artifacts; the worker's scratch (checkpoints) beside them."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def job_dir(self, job_id: str) -> Path:
        return self.root / _checked_id(job_id)

    def _artifact_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "artifacts"

    def put_dir(self, job_id: str, source: Path) -> list[ArtifactInfo]:
        target = self._artifact_dir(job_id)
        staging = self.job_dir(job_id) / ".artifacts-staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in sorted(Path(source).iterdir()):
            if path.is_file() and not path.is_symlink():
                shutil.copy2(path, staging / path.name)
        # Readers never see a half-copied set of files.
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        return self.list(job_id)

    def list(self, job_id: str) -> list[ArtifactInfo]:
        folder = self._artifact_dir(job_id)
        if not folder.is_dir():
            return []
        return [
            ArtifactInfo(p.name, p.stat().st_size, content_type_for(p.name))
            for p in sorted(folder.iterdir())
            if p.is_file()
        ]

    def path(self, job_id: str, name: str) -> Path:
        # Only names the listing shows: a name with "/" or ".." never reaches the disk.
        if name not in {info.name for info in self.list(job_id)}:
            raise FileNotFoundError(name)
        return self._artifact_dir(job_id) / name

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)


def artifact_store(settings: Settings | None = None) -> LocalArtifactStore:
    settings = settings or get_settings()
    return LocalArtifactStore(settings.artifact_dir)


@contextmanager
def receiving_folder(incoming: Path) -> Iterator[Path]:
    """A private temporary folder under `incoming` for an upload in progress; always
    removed afterwards, so a rejected upload leaves nothing behind."""
    incoming.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=incoming))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class DatasetFiles:
    """Uploaded dataset files: ROOT/<id>.npz|zip, written only after validation."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.incoming = self.root / ".incoming"

    def path(self, dataset_id: str, kind: str) -> Path:
        if kind not in ("npz", "zip"):
            raise ValueError(f"unknown dataset kind {kind!r}")
        return self.root / f"{_checked_id(dataset_id)}.{kind}"

    def receive(self) -> AbstractContextManager[Path]:
        """A private temporary folder for an upload in progress (`receiving_folder`)."""
        return receiving_folder(self.incoming)

    def accept(self, received: Path, dataset_id: str, kind: str) -> Path:
        """Move a validated upload into place (same filesystem: atomic)."""
        target = self.path(dataset_id, kind)
        os.replace(received, target)
        return target

    def delete(self, dataset_id: str, kind: str) -> None:
        self.path(dataset_id, kind).unlink(missing_ok=True)


def dataset_files(settings: Settings | None = None) -> DatasetFiles:
    settings = settings or get_settings()
    return DatasetFiles(settings.dataset_dir)
