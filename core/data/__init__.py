"""Datasets: built-in sets by name, uploaded files by path.

load_dataset() returns DatasetSplits (train / val / test TensorDatasets of
normalised float images); dataset_info() answers the model-shape questions
cheaply; fetch_dataset() puts a built-in set into the data folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.data.splits import DatasetInfo, DatasetSplits, RawDataset, make_splits
from core.errors import DataError

BUILTIN_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
UPLOAD_PREFIX = "upload:"
FILE_SUFFIXES = (".npz", ".zip")
DATA_DIR_ENV = "LORITA_DATA_DIR"

# Shapes of the built-in sets, known without touching their files.
BUILTIN_INFO = {
    "digits": DatasetInfo(10, 1, 8, "digits", num_train=1437, num_test=360),
    "mnist": DatasetInfo(10, 1, 28, "mnist", num_train=60_000, num_test=10_000),
    "fashion-mnist": DatasetInfo(10, 1, 28, "fashion-mnist", num_train=60_000, num_test=10_000),
    "cifar10": DatasetInfo(10, 3, 32, "cifar10", num_train=50_000, num_test=10_000),
    "cifar100": DatasetInfo(100, 3, 32, "cifar100", num_train=50_000, num_test=10_000),
}


def available_datasets() -> list[str]:
    return list(BUILTIN_DATASETS)


def is_dataset_reference(name: str) -> bool:
    return (
        name in BUILTIN_DATASETS
        or (name.startswith(UPLOAD_PREFIX) and len(name) > len(UPLOAD_PREFIX))
        or name.lower().endswith(FILE_SUFFIXES)
    )


def default_data_dir() -> Path:
    """$LORITA_DATA_DIR, else ~/.cache/lorita/data."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "lorita" / "data"


def _file_for(name: str, file: Path | str | None) -> Path | None:
    if file is not None:
        return Path(file)
    if name.startswith(UPLOAD_PREFIX):
        raise DataError(
            f"{name} is an uploaded dataset; the service resolves it to a file - pass that "
            "file's path instead"
        )
    if name.lower().endswith(FILE_SUFFIXES):
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
    raw = read_raw_dataset(name, data_dir, file=file)
    return make_splits(raw, val_fraction=val_fraction, seed=seed, train_subset=train_subset)


def dataset_info(
    name: str, data_dir: Path | str | None = None, file: Path | str | None = None
) -> DatasetInfo:
    """Classes, channels and image size without loading the images."""
    path = _file_for(name, file)
    if path is not None:
        return validate_upload(path)
    return BUILTIN_INFO[name]


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
    "DatasetInfo",
    "DatasetSplits",
    "RawDataset",
    "available_datasets",
    "dataset_info",
    "default_data_dir",
    "fetch_dataset",
    "is_dataset_reference",
    "load_dataset",
    "read_raw_dataset",
    "validate_upload",
]
