"""Uploaded model weights: the owner's rows and their files.

A job refers to uploaded weights as `model.weights: "upload:ID"`; the API (when it
validates a job) and the worker (when it runs one) resolve that reference here and
only ever find the uploads of the job's owner. The files live beside the uploaded
datasets (DATASET_DIR/weights/<id>.safetensors), on the folder the API and the
workers already share.
"""

from __future__ import annotations

import os
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

from store.artifacts import receiving_folder
from store.models import ModelUpload
from store.settings import Settings, get_settings
from store.uploads import OwnedUploads

WEIGHTS_FOLDER = "weights"

owned_models = OwnedUploads(ModelUpload)
get_owned_model = owned_models.get
list_owned_models = owned_models.list


class WeightsFiles:
    """ROOT/<id>.safetensors, written only after the upload was checked."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.incoming = self.root / ".incoming"

    def path(self, model_id: str) -> Path:
        # Only canonical UUIDs become file names: no id can point outside the folder.
        return self.root / f"{uuid.UUID(model_id)}.safetensors"

    def receive(self) -> AbstractContextManager[Path]:
        """A private temporary folder for an upload in progress (`receiving_folder`)."""
        return receiving_folder(self.incoming)

    def accept(self, received: Path, model_id: str) -> Path:
        """Move a checked upload into place (same filesystem: atomic)."""
        target = self.path(model_id)
        os.replace(received, target)
        return target

    def delete(self, model_id: str) -> None:
        self.path(model_id).unlink(missing_ok=True)


def weights_files(settings: Settings | None = None) -> WeightsFiles:
    settings = settings or get_settings()
    return WeightsFiles(Path(settings.dataset_dir) / WEIGHTS_FOLDER)
