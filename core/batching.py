"""Fast batches for in-memory datasets, image augmentation on whole batches, and how a
batch is fed to a model (memory format, mixed precision).

Small classification sets (digits, MNIST, CIFAR) fit in memory as one tensor;
slicing that tensor by a shuffled index is far faster than a DataLoader with
workers, and runs the same on CPU and CUDA. Datasets that are not tensors fall
back to a DataLoader.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset


def dataset_tensors(dataset: Dataset) -> tuple[Tensor, Tensor] | None:
    """(inputs, labels) of a TensorDataset (or a Subset of one), else None."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        inputs, labels = dataset.tensors
        return inputs, labels
    if isinstance(dataset, Subset):
        inner = dataset_tensors(dataset.dataset)
        if inner is None:
            return None
        index = torch.as_tensor(dataset.indices, dtype=torch.long)
        return inner[0][index], inner[1][index]
    return None


class Batches:
    """Iterable of (inputs, labels) batches on `device`, in a seeded order.

    The order of epoch `e` depends only on (seed, e), so a resumed run sees the
    same batches as an uninterrupted one.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        device: torch.device | str,
        *,
        shuffle: bool = False,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.dataset = dataset
        tensors = dataset_tensors(dataset)
        if tensors is not None:
            inputs, labels = tensors
            if limit is not None and limit < len(labels):
                # A fixed, seeded subset (not the first rows, which may be sorted by class).
                keep = torch.randperm(len(labels), generator=self._generator(-1))[:limit]
                inputs, labels = inputs[keep], labels[keep]
            self.inputs = inputs.to(self.device, torch.float32)
            self.labels = labels.to(self.device, torch.long)
            self.count = len(self.labels)
        else:
            self.inputs = self.labels = None
            self.count = len(dataset) if limit is None else min(limit, len(dataset))
            if limit is not None and limit < len(dataset):
                keep = torch.randperm(len(dataset), generator=self._generator(-1))[:limit]
                self.dataset = Subset(dataset, keep.tolist())

    def _generator(self, epoch: int) -> torch.Generator:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 100_003 + epoch + 1)
        return generator

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.count + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.inputs is not None:
            yield from self._tensor_batches()
        else:
            yield from self._loader_batches()

    def _tensor_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.shuffle:
            order = torch.randperm(self.count, generator=self._generator(self.epoch))
            order = order.to(self.device)
            for start in range(0, self.count, self.batch_size):
                index = order[start : start + self.batch_size]
                yield self.inputs[index], self.labels[index]
        else:
            for start in range(0, self.count, self.batch_size):
                end = start + self.batch_size
                yield self.inputs[start:end], self.labels[start:end]

    def _loader_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            generator=self._generator(self.epoch) if self.shuffle else None,
            num_workers=0,
            pin_memory=self.device.type == "cuda",
        )
        for inputs, labels in loader:
            yield (
                inputs.to(self.device, torch.float32, non_blocking=True),
                torch.as_tensor(labels).to(self.device, torch.long, non_blocking=True),
            )


def crop_padding(image_size: int) -> int:
    """Pad 4 px at 32 px (the usual CIFAR recipe), scaled for other sizes."""
    return max(1, round(4 * image_size / 32))


def augment_batch(
    inputs: Tensor, *, pad: int, flip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop after zero padding by `pad`, and optional horizontal flip, per image.

    The random numbers come from a CPU generator so a seeded run draws the same
    crops on any device.
    """
    count, _, height, width = inputs.shape
    device = inputs.device
    if pad > 0:
        shift_y = torch.randint(0, 2 * pad + 1, (count,), generator=generator).to(device)
        shift_x = torch.randint(0, 2 * pad + 1, (count,), generator=generator).to(device)
        padded = torch.nn.functional.pad(inputs, (pad, pad, pad, pad))
        rows = shift_y[:, None] + torch.arange(height, device=device)[None, :]
        cols = shift_x[:, None] + torch.arange(width, device=device)[None, :]
        batch = torch.arange(count, device=device)[:, None, None]
        # Advanced indexing gathers each image's window: result is (N, H, W, C).
        inputs = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        inputs = inputs.permute(0, 3, 1, 2)
    if flip:
        mirror = torch.rand(count, generator=generator).to(device) < 0.5
        inputs = torch.where(mirror[:, None, None, None], inputs.flip(3), inputs)
    return inputs.contiguous()


def model_input(inputs: Tensor, channels_last: bool) -> Tensor:
    """`inputs` in the memory format the model was put in (channels_last for image batches)."""
    if channels_last and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def autocast_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when `amp` is on; full precision everywhere else."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
