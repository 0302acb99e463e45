"""What a compressed model costs and how well it does: parameters, FLOPs, latency, accuracy.

These numbers go into every report, so they are measured, not estimated:
- parameters: every (distinct) parameter tensor, biases and norms included;
- FLOPs: counted by torch.utils.flop_counter.FlopCounterMode on one batch-1 forward
  pass, which counts 2 FLOPs per multiply-add of matmuls, convolutions and attention
  (element-wise ops such as ReLU, norms and additions are not counted);
- latency: median wall time of batch forward passes in eval/inference mode;
- accuracy and mean cross-entropy on a dataset (`evaluate`, the engine's only evaluator).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from core.batching import Batches, autocast_context, model_input


def count_params(model: nn.Module) -> int:
    """Number of parameters; a tensor shared by several modules counts once."""
    return sum(p.numel() for p in model.parameters())


def _param_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.get_default_dtype()


class _EvalMode:
    """Puts a model in eval mode for a block and restores every module's own flag."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags = [m.training for m in model.modules()]

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        for m, flag in zip(self.model.modules(), self.flags, strict=True):
            m.training = flag


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on a single sample (2 per multiply-add).

    ``input_shape`` is one sample's shape without the batch dimension, e.g.
    ``(3, 32, 32)``; the input is created on the model's device and dtype (the count
    does not depend on either).
    """
    device, dtype = _param_device_dtype(model)
    x = torch.zeros((1, *input_shape), device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with _EvalMode(model), torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency_ms(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    repeats: int | None = None,
    warmup: int = 3,
    time_budget_s: float = 0.5,
) -> float:
    """Median milliseconds of one forward pass of a ``batch_size`` batch on ``device``.

    ``input_shape`` excludes the batch dimension. The model is copied when it lives on
    another device (the caller's model is never moved). ``repeats=None`` times as many
    passes as fit in about ``time_budget_s`` (between 5 and 50).
    """
    device = torch.device(device)
    param_device, dtype = _param_device_dtype(model)
    if param_device != device:
        model = copy.deepcopy(model).to(device)
    x = torch.randn((batch_size, *input_shape), device=device, dtype=dtype)
    times = []
    with _EvalMode(model), torch.inference_mode():
        for _ in range(max(warmup, 1)):
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
        if repeats is None:
            repeats = int(min(50, max(5, time_budget_s / max(min(times), 1e-6))))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


EVAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Evaluation:
    """What one pass of a classifier over a dataset found; unpacks as (accuracy, loss)."""

    accuracy: float
    loss: float  # mean cross-entropy
    # Per-sample correctness (bool, CPU, in the data's order) when asked for: the rank
    # search compares candidates with the uncompressed model sample by sample.
    correct: Tensor | None = None

    def __iter__(self) -> Iterator[float]:
        return iter((self.accuracy, self.loss))


def _labelled_batches(
    data: Batches | Dataset | DataLoader, device: torch.device, batch_size: int
) -> Iterable[tuple[Tensor, Tensor]]:
    if isinstance(data, Batches | DataLoader):
        return data
    return Batches(data, batch_size, device)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Batches | Dataset | DataLoader,
    device: str | torch.device | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    *,
    amp: bool = False,
    channels_last: bool = False,
    per_sample: bool = False,
) -> Evaluation:
    """Accuracy and mean cross-entropy of a classifier over `data`, in eval mode.

    The one evaluator of the engine: training's validation, the rank search and the
    reported accuracies all go through it, so they count the same way. `data` is
    `Batches` (already on their device), a DataLoader or a dataset (batched here).
    `device` defaults to the batches' device, else the model's; the model is moved
    there (in place, as ``model.to`` does) only when it lives elsewhere. Its
    train/eval flags are restored afterwards. `per_sample` also returns which samples
    were classified correctly.
    """
    param_device, dtype = _param_device_dtype(model)
    if device is None:
        device = data.device if isinstance(data, Batches) else param_device
    device = torch.device(device)
    if param_device != device:
        model.to(device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen, marks = 0, []
    with _EvalMode(model), autocast_context(device, amp):
        for inputs, labels in _labelled_batches(data, device, batch_size):
            inputs = inputs.to(device, non_blocking=True)
            if inputs.is_floating_point() and inputs.dtype != dtype:
                inputs = inputs.to(dtype)
            labels = torch.as_tensor(labels).to(device, non_blocking=True)
            logits = model(model_input(inputs, channels_last)).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
            hits = logits.argmax(1) == labels
            correct += hits.sum()
            seen += labels.numel()
            if per_sample:
                marks.append(hits)
    if seen == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return Evaluation(
        accuracy=correct.item() / seen,
        loss=loss_sum.item() / seen,
        correct=torch.cat(marks).cpu() if per_sample else None,
    )
