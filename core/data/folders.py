"""Built-in datasets stored on disk in torchvision's layout.

<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
<data_dir>/FashionMNIST/raw/...            (same names)
<data_dir>/cifar-10-batches-py/            (torchvision's CIFAR10 folder)
<data_dir>/cifar-100-python/               (torchvision's CIFAR100 folder)

Whole sets are loaded into memory as uint8 tensors: MNIST is 47 MB, CIFAR 150 MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.catalog.datasets import FASHION_MNIST_CLASSES
from core.data.idx import read_idx
from core.data.layout import (
    CIFAR_FOLDERS,
    IDX_FILES,
    IDX_FOLDERS,
    find_idx_file,
    idx_dataset_present,  # noqa: F401 - re-exported beside the loaders
    idx_raw_dir,
)
from core.data.splits import RawDataset
from core.errors import DataError

FASHION_CLASSES = FASHION_MNIST_CLASSES  # the catalog holds the facts of the built-ins


def missing_message(name: str, data_dir: Path, detail: str) -> str:
    return (
        f"dataset {name!r} is not in {data_dir} ({detail}); run `lorita data fetch {name}` "
        "or set LORITA_DATA_DIR to the folder that holds it"
    )


def load_idx_dataset(name: str, data_dir: Path) -> RawDataset:
    raw_dir = idx_raw_dir(name, data_dir)
    arrays: dict[str, np.ndarray] = {}
    for key, stem in IDX_FILES.items():
        path = find_idx_file(raw_dir, stem)
        if path is None:
            raise DataError(missing_message(name, data_dir, f"{raw_dir / stem} is missing"))
        arrays[key] = read_idx(path, expected_ndim=3 if key.startswith("x") else 1)
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(images) != len(labels):
            raise DataError(
                f"{raw_dir}: {len(labels)} {split} labels for {len(images)} images; "
                "the files are from different sets - fetch the dataset again"
            )
    names = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(d) for d in range(10))
    return RawDataset(
        name=name,
        x_train=torch.from_numpy(arrays["x_train"]).unsqueeze(1),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=torch.from_numpy(arrays["x_test"]).unsqueeze(1),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        num_classes=10,
        class_names=names,
        layout="NHW",  # IDX files hold (N, 28, 28) uint8
        dtype="uint8",
    )


def load_cifar(name: str, data_dir: Path) -> RawDataset:
    from torchvision import datasets

    folder = Path(data_dir) / CIFAR_FOLDERS[name]
    if not folder.is_dir():
        raise DataError(missing_message(name, data_dir, f"{folder} is missing"))
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train = cls(root=str(data_dir), train=True, download=False)
        test = cls(root=str(data_dir), train=False, download=False)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise DataError(missing_message(name, data_dir, str(error))) from error

    def images(ds) -> torch.Tensor:  # (N, 32, 32, 3) uint8 -> (N, 3, 32, 32)
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()

    return RawDataset(
        name=name,
        x_train=images(train),
        y_train=torch.tensor(train.targets, dtype=torch.long),
        x_test=images(test),
        y_test=torch.tensor(test.targets, dtype=torch.long),
        num_classes=len(train.classes),
        class_names=tuple(train.classes),
        layout="NHWC",  # torchvision's CIFAR `data` is (N, 32, 32, 3) uint8
        dtype="uint8",
    )


def load_folder_dataset(name: str, data_dir: Path) -> RawDataset:
    if name in IDX_FOLDERS:
        return load_idx_dataset(name, data_dir)
    return load_cifar(name, data_dir)
