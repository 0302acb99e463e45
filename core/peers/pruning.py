"""Structured pruning to a size budget, the peer users would pick instead of LoRITa.

Torch-Pruning's dependency graph (DepGraph) finds the channels / neurons that must
go together (a conv's outputs, the BatchNorm after it, the next layer's inputs, every
branch of a residual add) and removes whole groups, so the result is a dense,
narrower `nn.Module` that runs faster as it is, not a masked copy.

The budget is a share of the dense model's size under one of SIZE_MEASURES:
- "params": every parameter (core.measure.count_params, the number jobs report);
- "weight_params": only the weight tensors of the Linear / Conv layers (the matrices
  LoRITa truncates; biases and norms left out);
- "flops": core.measure.count_flops of one sample.
Torch-Pruning takes a *channel* ratio, and size falls roughly with its square, so the
ratio is searched: interpolation on the square root of the size between a bracket
of ratios that keep too much and too little, narrowed until the share is within
RELATIVE_TOLERANCE of the request or no channel count changes any more. Every trial
prunes a fresh copy; the caller's model is never modified.

The classifier's output layer (the last Linear / Conv the forward pass calls) keeps
its outputs, so predictions keep their shape; `exclude` globs keep more layers'
outputs. Models must be plain (a LoRITa model merged first); structures the graph
cannot follow are rewritten for the search (core.peers.shortcuts) or reported as a
PruningError.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from core.errors import LoritaError
from core.factorize import composed_layers
from core.measure import count_flops, count_params
from core.peers.shortcuts import from_traceable, to_traceable

# Accept a pruned size within this relative distance of the request.
RELATIVE_TOLERANCE = 0.005
# Pruned copies tried at most (each one costs a graph trace and a prune).
MAX_TRIALS = 16
# Torch-Pruning keeps int(width * (1 - ratio)) channels of a group and skips a group
# that would keep none, so the search stays below 1 - 1/(narrowest width) (a hair
# under, against rounding), where every prunable layer keeps at least one channel.
_RATIO_MARGIN = 1.0001
# Seed of the example input the graph is traced with (only shapes matter).
TRACE_SEED = 0


class PruningError(LoritaError):
    """The model cannot be pruned as asked (a layer, an exclude glob or the budget)."""

    kind = "pruning"


def weight_layer_params(model: nn.Module) -> int:
    """Elements of the weight tensors of every Linear and Conv layer (no biases, no norms)."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if (
            isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
            and id(module.weight) not in seen
        ):
            seen.add(id(module.weight))
            total += module.weight.numel()
    return total


SIZE_MEASURES: dict[str, Callable[[nn.Module, tuple[int, ...]], int]] = {
    "params": lambda model, shape: count_params(model),
    "weight_params": lambda model, shape: weight_layer_params(model),
    "flops": lambda model, shape: count_flops(model, shape),
}

# How channels are ranked inside a group; all data-free (magnitude based).
IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(p=2),
}


# ----- what the search returns -----


@dataclass
class PruningResult:
    """A pruned copy and its size next to the dense model's.

    `params`, `weight_params` and `flops` are (dense, pruned) pairs; `achieved` is the
    pruned share of the dense model under `measure`; `widths` the output width of
    every Linear / Conv layer (the structure needed to rebuild the model).
    """

    model: nn.Module
    measure: str
    requested: float
    achieved: float
    pruning_ratio: float
    params: tuple[int, int]
    weight_params: tuple[int, int]
    flops: tuple[int, int]
    widths: dict[str, int] = field(default_factory=dict)
    ignored_layers: list[str] = field(default_factory=list)
    trials: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (everything but the model)."""
        return {
            "method": "torch-pruning",
            "measure": self.measure,
            "requested": self.requested,
            "achieved": self.achieved,
            "pruning_ratio": self.pruning_ratio,
            "params": {"uncompressed": self.params[0], "compressed": self.params[1]},
            "weight_params": {
                "uncompressed": self.weight_params[0],
                "compressed": self.weight_params[1],
            },
            "flops": {"uncompressed": self.flops[0], "compressed": self.flops[1]},
            "widths": dict(self.widths),
            "ignored_layers": list(self.ignored_layers),
        }


# ----- the search -----


def prune_to_budget(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    target: str = "params",
    keep: float = 0.06,
    exclude: str | Iterable[str] = (),
    importance: str = "l2",
    global_pruning: bool = False,
    max_trials: int = MAX_TRIALS,
    closest: bool = False,
) -> PruningResult:
    """Prune a copy of `model` to `keep` (a share in (0, 1]) of its `target` size.

    `input_shape` is one sample's shape without the batch dimension. `exclude` are
    layer-name globs whose outputs are not pruned (the output layer never is).
    `importance` ranks channels (see IMPORTANCES); `global_pruning` lets layers lose
    different shares of their channels instead of the same ratio everywhere.
    Raises PruningError when the model or the budget cannot be served; with `closest`,
    a budget below what pruning can reach returns the smallest model it can reach instead
    (its `achieved` share tells how far it is from the request).
    """
    if target not in SIZE_MEASURES:
        raise PruningError(f"unknown pruning target {target!r}; use one of {sorted(SIZE_MEASURES)}")
    if importance not in IMPORTANCES:
        raise PruningError(f"unknown importance {importance!r}; use one of {sorted(IMPORTANCES)}")
    if not 0.0 < keep <= 1.0:
        raise PruningError(f"keep must be a share in (0, 1], got {keep}")
    _check_plain(model)
    shape = tuple(int(s) for s in input_shape)
    example = _example_input(model, shape)
    ignored = _ignored_names(model, example, exclude)
    measure = SIZE_MEASURES[target]
    dense_size = max(measure(model, shape), 1)

    # Also the cap per layer: with global pruning, no layer may be emptied either.
    max_ratio = _max_ratio(model, ignored)

    def prune(ratio: float) -> tuple[nn.Module, float]:
        pruned = _pruned_copy(model, example, ratio, ignored, importance, global_pruning, max_ratio)
        return pruned, measure(pruned, shape) / dense_size

    best_ratio, (best_model, best_share) = 0.0, (model, 1.0)
    trials = 0

    def consider(ratio: float, candidate: nn.Module, share: float) -> None:
        nonlocal best_ratio, best_model, best_share
        if abs(share - keep) < abs(best_share - keep):
            best_ratio, best_model, best_share = ratio, candidate, share

    if keep < 1.0:
        low, low_share = 0.0, 1.0
        high = max_ratio
        candidate, high_share = prune(high)
        trials += 1
        consider(high, candidate, high_share)
        unreachable = high_share > keep * (1 + RELATIVE_TOLERANCE)
        if unreachable and closest:
            max_trials = trials  # the most pruned model is the closest one: stop here
        elif unreachable:
            raise PruningError(
                f"pruning cannot go below {high_share:.1%} of the {target} (asked {keep:.1%}): "
                f"the layers it may not narrow ({', '.join(ignored)}) and the input layer's "
                "inputs stay; ask for a larger share or exclude fewer layers"
            )
        while trials < max_trials and abs(best_share / keep - 1) > RELATIVE_TOLERANCE:
            ratio = _next_ratio(low, low_share, high, high_share, keep)
            if ratio is None:
                break
            candidate, share = prune(ratio)
            trials += 1
            consider(ratio, candidate, share)
            if share > keep:
                low, low_share = ratio, share
            else:
                high, high_share = ratio, share
    if best_model is model:
        best_model = copy.deepcopy(model)

    return PruningResult(
        model=best_model,
        measure=target,
        requested=keep,
        achieved=best_share,
        pruning_ratio=best_ratio,
        params=(count_params(model), count_params(best_model)),
        weight_params=(weight_layer_params(model), weight_layer_params(best_model)),
        flops=(count_flops(model, shape), count_flops(best_model, shape)),
        widths=_widths(best_model),
        ignored_layers=ignored,
        trials=trials,
    )


def _next_ratio(
    low: float, low_share: float, high: float, high_share: float, keep: float
) -> float | None:
    """Next channel ratio inside (low, high): where the square root of the size, taken as
    linear in the ratio, meets the request; kept off the bracket's ends so it shrinks."""
    width = high - low
    if width < 1e-4:
        return None
    top, bottom = math.sqrt(low_share), math.sqrt(high_share)
    fraction = (top - math.sqrt(keep)) / max(top - bottom, 1e-12)
    fraction = min(max(fraction, 0.1), 0.9)
    return low + fraction * width


def _max_ratio(model: nn.Module, ignored: list[str]) -> float:
    widths = [w for name, w in _widths(model).items() if name not in ignored]
    return max(0.0, 1.0 - _RATIO_MARGIN / min(widths)) if widths else 0.0


def _check_plain(model: nn.Module) -> None:
    composed = composed_layers(model)
    if composed:
        raise PruningError(
            f"the model has composed (factorized) layers ({', '.join(composed[:3])}"
            f"{', ...' if len(composed) > 3 else ''}); merge them first "
            "(core.factorize.merge) and prune the plain model"
        )


def _example_input(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.get_default_dtype()
    generator = torch.Generator().manual_seed(TRACE_SEED)
    return torch.randn((1, *shape), generator=generator).to(device, dtype)


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))
    ]


def _ignored_names(model: nn.Module, example: torch.Tensor, exclude) -> list[str]:
    """The output layer plus every weight layer an `exclude` glob names."""
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    layers = _weight_layers(model)
    names = [name for name, _ in layers]
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            raise PruningError(
                f"exclude pattern {pattern!r} names no Linear/Conv layer; layers are "
                f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
            )
    chosen = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
    output_layer = _output_layer(model, layers, example)
    if output_layer not in chosen:
        chosen.append(output_layer)
    return chosen


def _output_layer(model: nn.Module, layers: list, example: torch.Tensor) -> str:
    """Name of the last Linear / Conv the forward pass calls (the classifier's head)."""
    called: list[str] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: called.append(name))
        for name, m in layers
    ]
    try:
        with _eval_mode(model), torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not called:
        raise PruningError("the model calls no Linear or Conv layer; there is nothing to prune")
    return called[-1]


class _eval_mode:
    """Eval mode for a block (tracing must not move BatchNorm statistics); flags restored."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags = {name: m.training for name, m in model.named_modules()}

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        _restore_flags(self.model, self.flags)


def _restore_flags(model: nn.Module, flags: dict[str, bool]) -> None:
    for name, m in model.named_modules():
        m.training = flags.get(name, m.training)


def _pruned_copy(
    model: nn.Module,
    example: torch.Tensor,
    ratio: float,
    ignored: list[str],
    importance: str,
    global_pruning: bool,
    max_ratio: float,
) -> nn.Module:
    flags = {name: m.training for name, m in model.named_modules()}
    pruned = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = pruned(example).shape
    try:
        to_traceable(pruned, example)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruner = tp.pruner.BasePruner(
                pruned,
                example,
                importance=IMPORTANCES[importance](),
                pruning_ratio=ratio,
                global_pruning=global_pruning,
                max_pruning_ratio=max_ratio,
                ignored_layers=[pruned.get_submodule(name) for name in ignored],
            )
        _refuse_unwrapped(caught)
        pruner.step()
        from_traceable(pruned)
    except PruningError:
        raise
    except Exception as error:  # the library's own failure, told in terms of the model
        raise PruningError(
            f"Torch-Pruning could not prune this model ({type(error).__name__}: {error}); "
            "exclude the layer it names or use another comparison"
        ) from error
    try:
        with torch.no_grad():
            got = pruned(example).shape
    except Exception as error:
        raise PruningError(
            "the pruned model no longer runs: a layer's channel dependencies were not "
            f"understood by Torch-Pruning ({type(error).__name__}: {error}); exclude that "
            "block's layers"
        ) from error
    if got != expected:
        raise PruningError(
            f"pruning changed the output shape from {tuple(expected)} to {tuple(got)}; "
            "exclude the output layers"
        )
    _restore_flags(pruned, flags)
    return pruned


def _refuse_unwrapped(caught: list[warnings.WarningMessage]) -> None:
    """Bare nn.Parameters used outside a layer (position embeddings, class tokens) are
    pruned along a guessed dimension; refuse rather than return a silently wrong model."""
    for warning in caught:
        text = str(warning.message)
        if "Unwrapped parameters" in text:
            names = text.split("\n")[0].removeprefix("Unwrapped parameters detected: ")
            raise PruningError(
                f"the model uses bare parameters {names} outside any layer; Torch-Pruning "
                "would guess which dimension to prune, so structured pruning is not run"
            )


def _widths(model: nn.Module) -> dict[str, int]:
    widths = {}
    for name, m in _weight_layers(model):
        widths[name] = m.out_features if isinstance(m, nn.Linear) else m.out_channels
    return widths
