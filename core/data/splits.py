"""Train / validation / test splits held in memory as normalised tensors.

Every dataset, built-in or uploaded, ends up as one `RawDataset` (images as
uint8 or [0, 1] floats, integer labels) and is turned into `DatasetSplits` here,
so splitting and normalisation happen the same way for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import TensorDataset

from core.catalog import DatasetInfo
from core.errors import DataError
from core.result import InputContract


@dataclass
class RawDataset:
    """A dataset as loaded from disk, before splitting and normalisation.

    x_*: (N, C, H, W) uint8 (0-255) or float32 holding the dataset's own values;
    y_*: (N,) int64 labels 0..K-1. `layout` is the axis order the dataset stores
    its images in (x_* are reordered to NCHW), `divisor` what its values are divided
    by before normalisation (None: 255 for uint8, else 1), `dtype` the stored dtype:
    together they are the raw-input contract of the exported models.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...] | None = None
    layout: str = "NCHW"
    divisor: float | None = None
    dtype: str | None = None

    def value_divisor(self) -> float:
        if self.divisor is not None:
            return float(self.divisor)
        return 255.0 if self.x_train.dtype == torch.uint8 else 1.0

    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_classes=self.num_classes,
            in_channels=int(self.x_train.shape[1]),
            image_size=int(self.x_train.shape[2]),
            name=self.name,
            num_train=len(self.y_train),
            num_test=len(self.y_test),
            class_names=self.class_names,
        )


@dataclass
class DatasetSplits:
    """train / val / test as TensorDatasets of (normalised float32 CxHxW, int64 label).

    The tensors sit in memory so a trainer can move a whole split to the device
    once and batch there (`splits.train.tensors`).
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    in_channels: int
    image_size: int
    name: str
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    is_image: bool = True
    class_names: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict)
    input_contract: InputContract | None = None

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            image_size=self.image_size,
            name=self.name,
            is_image=self.is_image,
            num_train=len(self.train) + len(self.val),
            num_test=len(self.test),
            class_names=self.class_names,
        )


def split_indices(
    count: int, val_fraction: float, seed: int, train_subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, val) index split of `count` training samples.

    `train_subset` first draws that many samples (quick experiments stay quick
    end to end, validation included), then val_fraction of them is held out.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    if train_subset is not None:
        if train_subset < 2:
            raise DataError(f"train_subset must be at least 2, got {train_subset}")
        order = order[: min(train_subset, count)]
    num_val = max(1, round(len(order) * val_fraction))
    if num_val >= len(order):
        raise DataError(
            f"the training set has {count} samples; too few to hold out a validation split"
        )
    return order[num_val:], order[:num_val]


def _to_float(x: torch.Tensor, divisor: float) -> torch.Tensor:
    # The same float32 operations as core.preprocess.RawInput, so exported models
    # given the raw values compute exactly what was evaluated here.
    # A copy: normalising in place must not change the RawDataset's own tensors.
    x = x.to(torch.float32, copy=True)
    return x.div_(divisor) if divisor != 1.0 else x


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, C, H, W) floats, computed in float64."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    mean = flat.mean(dim=1)
    std = flat.std(dim=1)
    # A constant channel (e.g. an all-black border set) must not divide by zero.
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean, std


def make_splits(
    raw: RawDataset, *, val_fraction: float = 0.1, seed: int = 0, train_subset: int | None = None
) -> DatasetSplits:
    train_idx, val_idx = split_indices(len(raw.y_train), val_fraction, seed, train_subset)
    divisor = raw.value_divisor()
    x_train = _to_float(raw.x_train[train_idx], divisor)
    x_val = _to_float(raw.x_train[val_idx], divisor)
    x_test = _to_float(raw.x_test, divisor)
    if not (torch.isfinite(x_train).all() and torch.isfinite(x_test).all()):
        raise DataError(f"{raw.name}: the images contain NaN or infinite values")

    # Statistics of the training part only, so validation and test stay unseen.
    mean, std = channel_stats(x_train)
    shape = (1, -1, 1, 1)
    for x in (x_train, x_val, x_test):
        x.sub_(mean.float().view(shape)).div_(std.float().view(shape))

    def dataset(x: torch.Tensor, y: torch.Tensor) -> TensorDataset:
        return TensorDataset(x.contiguous(), y.long())

    return DatasetSplits(
        train=dataset(x_train, raw.y_train[train_idx]),
        val=dataset(x_val, raw.y_train[val_idx]),
        test=dataset(x_test, raw.y_test),
        num_classes=raw.num_classes,
        in_channels=int(raw.x_train.shape[1]),
        image_size=int(raw.x_train.shape[2]),
        name=raw.name,
        channel_mean=tuple(float(v) for v in mean),
        channel_std=tuple(float(v) for v in std),
        class_names=raw.class_names,
        input_contract=input_contract(raw, mean, std),
    )


def input_contract(raw: RawDataset, mean: torch.Tensor, std: torch.Tensor) -> InputContract:
    """The raw input the exported models take: this dataset's values, layout and dtype."""
    _, channels, height, width = raw.x_train.shape
    shapes = {"NHW": [height, width], "NCHW": [channels, height, width]}
    values = raw.x_train if raw.x_train.dtype == torch.uint8 else raw.x_train.float()
    return InputContract(
        layout=raw.layout,
        shape=shapes.get(raw.layout, [height, width, channels]),
        dtype=raw.dtype or str(raw.x_train.dtype).removeprefix("torch."),
        value_range=[float(values.min()), float(values.max())],
        divisor=raw.value_divisor(),
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        class_names=list(raw.class_names) if raw.class_names else None,
    )


def as_tensor_images(x: np.ndarray) -> torch.Tensor:
    """numpy (N, C, H, W) -> torch, keeping uint8 as is and anything else as float32."""
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
