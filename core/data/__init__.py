"""Datasets: built-in sets by name, uploaded files by path.

load_dataset() returns DatasetSplits (train / val / test TensorDatasets of
normalised float images); validate_upload() checks an uploaded file without
loading it; fetch_dataset() puts a built-in set into the data folder. The names
and facts of the built-in sets live in the torch-free core.catalog; importing
this package does not import torch either (the API validates uploads with it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.catalog import (
    BUILTIN_DATASETS,
    UPLOAD_PREFIX,
    DatasetInfo,
    available_datasets,
    is_dataset_reference,
    is_file_reference,
)
from core.errors import DataError
from core.paths import default_data_dir

if TYPE_CHECKING:
    from core.data.splits import DatasetSplits, RawDataset


def _file_for(name: str, file: Path | str | None) -> Path | None:
    if file is not None:
        return Path(file)
    if name.startswith(UPLOAD_PREFIX):
        raise DataError(
            f"{name} is an uploaded dataset; the service resolves it to a file - pass that "
            "file's path instead"
        )
    if is_file_reference(name):
        return Path(name).expanduser()
    if name not in BUILTIN_DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)} or give "
            "a .npz / .zip file"
        )
    return None


def read_raw_dataset(
    name: str, data_dir: Path | str | None = None, *, file: Path | str | None = None
) -> RawDataset:
    """The whole dataset as loaded from disk (train and test), before splitting."""
    path = _file_for(name, file)
    if path is not None:
        from core.data.upload import read_upload

        return read_upload(path)
    if name == "digits":
        from core.data.builtin import load_digits

        return load_digits()
    from core.data.folders import load_folder_dataset

    return load_folder_dataset(name, Path(data_dir) if data_dir else default_data_dir())


def load_dataset(
    name: str,
    data_dir: Path | str | None = None,
    *,
    file: Path | str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_subset: int | None = None,
) -> DatasetSplits:
    """Load a dataset and split it: val is a seeded share of train; test stays untouched."""
    from core.data.splits import make_splits

    raw = read_raw_dataset(name, data_dir, file=file)
    return make_splits(raw, val_fraction=val_fraction, seed=seed, train_subset=train_subset)


def fetch_dataset(name: str, data_dir: Path | str | None = None) -> Path:
    """Download (or copy from offline packages) a built-in dataset into data_dir."""
    from core.data.fetch import fetch_dataset as fetch

    return fetch(name, Path(data_dir) if data_dir else default_data_dir())


def validate_upload(path: Path | str, **limits) -> DatasetInfo:
    """Check an uploaded .npz / .zip; DatasetInfo or DataError saying what to fix.

    limits: max_bytes, max_uncompressed_bytes, max_files (see core.data.upload).
    """
    from core.data.upload import validate_upload as validate

    return validate(path, **limits)


__all__ = [
    "BUILTIN_DATASETS",
    "UPLOAD_PREFIX",
    "DatasetInfo",
    "available_datasets",
    "default_data_dir",
    "fetch_dataset",
    "is_dataset_reference",
    "load_dataset",
    "read_raw_dataset",
    "validate_upload",
]
