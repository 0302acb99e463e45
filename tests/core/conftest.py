"""Shared settings of the engine's tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test models are tiny: one thread is as fast, and it does not slow to a crawl
    when the suite shares the CPU with other processes (oversubscribed OpenMP threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
