"""Fine-tuning at several learning rates from the same start, keeping the best.

Which rate suits a fine-tuning depends on how far the model was cut (bench/README.md,
"The peers' learning rate" and "LoRITa's own fine-tuning rate"), so the job's own
fine-tuning and its fine-tuned peers each try compress.finetune_lr_scales from the same
start and keep the one that scores best on the validation split.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass
class RateChoice:
    """A fine-tuning kept: its epochs, the rate it ran at (a share of the training's)
    and every rate tried from the same start with its validation accuracy."""

    history: list[dict[str, Any]]
    lr_scale: float
    trials: list[dict[str, float]]  # lr_scale, val_accuracy


def finetune_at_best_rate(
    model: nn.Module,
    scales: Sequence[float],
    finetune_at: Callable[[nn.Module, float, int], list],
    val_accuracy: Callable[[nn.Module], float],
) -> RateChoice:
    """Fine-tune `model` in place at each of `scales` from the same start
    (`finetune_at(candidate, scale, index)` trains `candidate` and returns its history)
    and leave in `model` the one whose `val_accuracy` is highest (a tie keeps the
    earlier rate). `finetune_at` leaves its candidate in eval mode."""
    if not scales:
        raise ValueError("no learning rate to fine-tune at")
    trials: list[dict[str, float]] = []
    best: tuple[float, nn.Module, list, float] | None = None
    for index, scale in enumerate(scales):
        # The last rate fine-tunes the model itself; the others a copy of it.
        candidate = model if index == len(scales) - 1 else copy.deepcopy(model)
        history = finetune_at(candidate, scale, index)
        accuracy = val_accuracy(candidate)
        trials.append({"lr_scale": scale, "val_accuracy": accuracy})
        if best is None or accuracy > best[0]:
            best = (accuracy, candidate, history, scale)
    _, kept, history, scale = best
    if kept is not model:
        model.load_state_dict(kept.state_dict())
    return RateChoice(history, scale, trials)
