"""What a compressed model costs and how well it does: parameters, FLOPs, latency, accuracy.

These numbers go into every report, so they are measured, not estimated:
- parameters: every (distinct) parameter tensor, biases and norms included;
- FLOPs: counted by torch.utils.flop_counter.FlopCounterMode on one batch-1 forward
  pass, which counts 2 FLOPs per multiply-add of matmuls, convolutions and attention
  (element-wise ops such as ReLU, norms and additions are not counted);
- latency: median wall time of batch forward passes in eval/inference mode;
- accuracy and mean cross-entropy on a dataset.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode


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


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a classifier over a dataset or a DataLoader.

    The model is moved to ``device`` (in place, as ``model.to`` does) and evaluated in
    eval mode; its train/eval flags are restored afterwards.
    """
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    device = torch.device(device)
    model.to(device)
    _, dtype = _param_device_dtype(model)
    correct, loss_sum, seen = 0, 0.0, 0
    with _EvalMode(model), torch.inference_mode():
        for inputs, labels in loader:
            inputs = inputs.to(device, non_blocking=True)
            if inputs.is_floating_point():
                inputs = inputs.to(dtype)
            labels = torch.as_tensor(labels).to(device, non_blocking=True)
            logits = model(inputs)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            seen += labels.numel()
    if seen == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return correct / seen, loss_sum / seen
