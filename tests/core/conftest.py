"""Shared settings and data of the engine's tests."""

import numpy as np
import pytest
import torch

from core.data import load_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test models are tiny: one thread is as fast, and it does not slow to a crawl
    when the suite shares the CPU with other processes (oversubscribed OpenMP threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits():
    """The built-in 8x8 digits, 10% of the training images held out for validation."""
    return load_dataset("digits", seed=0, val_fraction=0.1)


@pytest.fixture(scope="module")
def digits_raw_test() -> tuple[np.ndarray, np.ndarray]:
    """The digits' test split as scikit-learn gives the images (float64 0..16, N x 8 x 8),
    read independently of the pipeline, and its labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from core.data.builtin import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION

    bunch = load_digits()
    _, test_idx = train_test_split(
        np.arange(len(bunch.target)),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=bunch.target,
    )
    return bunch.images[test_idx], bunch.target[test_idx]
