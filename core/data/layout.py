"""Where the built-in datasets sit in the data folder, and whether they are there.

Torch-free (stdlib only), so the API can say which built-ins a server already has
without loading them. The layout is torchvision's:

<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
<data_dir>/FashionMNIST/raw/...            (same names)
<data_dir>/cifar-10-batches-py/            (torchvision's CIFAR10 folder)
<data_dir>/cifar-100-python/               (torchvision's CIFAR100 folder)
digits ships inside scikit-learn and needs no folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_COUNTS = {"train": 60_000, "t10k": 10_000}
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_FILES = {
    "cifar10": (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
    "cifar100": ("train", "test"),
}


def idx_raw_dir(name: str, data_dir: Path) -> Path:
    return Path(data_dir) / IDX_FOLDERS[name] / "raw"


def find_idx_file(raw_dir: Path, stem: str) -> Path | None:
    """The unpacked file if present, else the gzipped one (torchvision keeps both)."""
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx_dataset_present(name: str, data_dir: Path) -> bool:
    raw_dir = idx_raw_dir(name, data_dir)
    return all(find_idx_file(raw_dir, stem) for stem in IDX_FILES.values())


def cifar_present(name: str, data_dir: Path) -> bool:
    folder = Path(data_dir) / CIFAR_FOLDERS[name]
    return all((folder / file).is_file() for file in CIFAR_FILES[name])


def builtin_present(name: str, data_dir: Path | str) -> bool:
    """Whether built-in `name` can be loaded from `data_dir` without fetching it."""
    data_dir = Path(data_dir).expanduser()
    if name == "digits":
        return importlib.util.find_spec("sklearn") is not None
    if name in IDX_FOLDERS:
        return idx_dataset_present(name, data_dir)
    if name in CIFAR_FOLDERS:
        return cifar_present(name, data_dir)
    return False
