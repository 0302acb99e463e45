"""Datasets that ship with the installed packages (no files, no download)."""

from __future__ import annotations

import torch

from core.data.splits import RawDataset

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def load_digits() -> RawDataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, values 0-16).

    The package has no official test set; a fixed stratified 80/20 split keeps
    test accuracies comparable between jobs regardless of the job's seed.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    # Kept at the dataset's own values (0..16); make_splits divides by 16.
    images = torch.from_numpy(bunch.images).float().unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).long()
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels.numpy(),
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return RawDataset(
        name="digits",
        x_train=images[train_idx],
        y_train=labels[train_idx],
        x_test=images[test_idx],
        y_test=labels[test_idx],
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        layout="NHW",  # bunch.images is (N, 8, 8)
        divisor=16.0,
        dtype=str(bunch.images.dtype),
    )
