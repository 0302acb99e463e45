"""A resolved training recipe for the engine tests that call train_model directly.

train_model takes a recipe with every field set (a job gets one from its
architecture's defaults), so these tests start from one plain recipe and change
only the fields the test is about."""

from __future__ import annotations

from core.spec import TrainSpec

PLAIN = {
    "epochs": 3,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "label_smoothing": 0.0,
    "augment": False,
    "amp": False,
    "compile": False,
    "channels_last": False,
}


def plain_recipe(**changes) -> TrainSpec:
    """Adam on a cosine schedule, no augmentation, none of the CUDA-only switches;
    `changes` replace fields."""
    return TrainSpec(**{**PLAIN, **changes})
