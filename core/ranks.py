"""Choosing the rank of every layer after LoRITa training.

Strategies (CompressSpec.strategy):
- uniform: every layer keeps the same share of its singular values;
- global:  singular values of all layers, each divided by its layer's largest, are
           pooled and the smallest are dropped until keep_fraction of them remain;
- budget:  the allocation with the least error for a kept share of params/FLOPs;
- accuracy (default): the fewest params/FLOPs whose validation accuracy stays within
           max_accuracy_drop of the uncompressed model's.

Costs follow what is stored and run: a layer of rank r costs r*(m+n) parameters
(times its output positions for FLOPs) only when that is below the dense m*n; a rank
that does not pay off leaves the layer dense *at full rank* (truncating it would cost
accuracy and save nothing). So every reported rank is either a paying rank or the
full rank, and `core.lowrank.to_lowrank` builds exactly the costed model.

The budget allocation at share b is a one-parameter family: singular values are
removed in increasing order of (their share of the layer's energy) / (cost they
save). Relative energy, not raw sigma^2, because a normalisation layer usually
follows a weight layer and makes its output scale irrelevant. The accuracy search
walks this family: a geometric grid from "keep everything" down until accuracy
falls out of tolerance, then bisection between the last good and first bad point.
Each candidate costs one pass over (a capped, fixed subset of) the validation split
with truncated weights U_r S_r V_r^T written into a working copy of the model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.batching import Batches
from core.errors import Cancelled
from core.events import StopCheck, never_stop
from core.lowrank import LowRankConv2d, LowRankLinear, pays_off, weight_matrix
from core.measure import count_flops, count_params
from core.spec import CompressSpec
from core.train import autocast_context

# Geometric grid of kept shares tried before bisection (1.0 is the reference).
GRID_RATIO = 0.6
BISECTION_STEPS = 4
# Validation samples per candidate: as many as fit this many FLOPs, within the bounds.
EVAL_FLOPS_CPU = 4e11
EVAL_FLOPS_CUDA = 5e13
MIN_EVAL_SAMPLES = 1000
MAX_EVAL_SAMPLES = 10000
EVAL_BATCH = 1024
# A candidate's accuracy drop plus this many standard errors of the paired difference
# must stay within the tolerance (about 84% one-sided confidence that it holds on new data).
CONFIDENCE_Z = 1.0
# The chosen point is verified on up to this many times the search's samples.
VERIFY_FACTOR = 3
# Passing points re-checked on the verification samples before giving up compression.
MAX_VERIFICATIONS = 4

ProgressCallback = Callable[[float, str], None]


@dataclass
class Layer:
    name: str
    shape: tuple[int, int]  # (m, n): out x fan-in
    positions: int  # output positions per sample (pixels, tokens); FLOPs scale with it
    u: torch.Tensor
    s: torch.Tensor  # float32, descending, on the working device
    vh: torch.Tensor
    weight: torch.Tensor  # the original weight (to restore exactly)

    @property
    def full_rank(self) -> int:
        return int(self.s.numel())

    def effective_rank(self, rank: int) -> int:
        m, n = self.shape
        rank = max(1, min(rank, self.full_rank))
        return rank if pays_off(m, n, rank) else self.full_rank

    def params(self, rank: int) -> int:
        m, n = self.shape
        rank = self.effective_rank(rank)
        return m * n if rank >= self.full_rank else rank * (m + n)

    def flops(self, rank: int) -> int:
        return 2 * self.positions * self.params(rank)


@dataclass
class RankChoice:
    ranks: dict[str, int]
    params_kept: float
    flops_kept: float
    val_accuracy: float | None
    reference_val_accuracy: float | None
    curve: list[dict[str, Any]] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)
    # Singular values of every layer (descending), computed once for the search and
    # reused by the report: an SVD of every VGG16 layer costs tens of seconds on a CPU.
    spectra: dict[str, torch.Tensor] = field(default_factory=dict)
    # How many validation samples val_accuracy / reference_val_accuracy rest on.
    verified_samples: int | None = None

    @property
    def chosen(self) -> dict[str, Any]:
        return {
            "params_kept": self.params_kept,
            "flops_kept": self.flops_kept,
            "val_accuracy": self.val_accuracy,
        }


class RankProblem:
    """SVDs, costs and truncation of the weight layers of a (merged, dense) model.

    Works on its own copy of the model; `set_ranks` puts truncated layers into it.
    """

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        input_shape: tuple[int, ...],
        *,
        device: str | torch.device = "cpu",
        total_params: int | None = None,
        total_flops: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = copy.deepcopy(model).to(self.device).eval()
        self.input_shape = tuple(input_shape)
        self.total_params = total_params or count_params(self.model)
        self.total_flops = total_flops or count_flops(self.model, self.input_shape)
        positions = self._output_positions(names)
        self.layers: list[Layer] = []
        for name in names:
            module = self.model.get_submodule(name)
            matrix = weight_matrix(module).to("cpu", torch.float64)
            u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
            as_device = {"device": self.device, "dtype": torch.float32}
            self.layers.append(
                Layer(
                    name=name,
                    shape=(matrix.shape[0], matrix.shape[1]),
                    positions=positions[name],
                    u=u.to(**as_device),
                    s=s.to(**as_device),
                    vh=vh.to(**as_device),
                    weight=module.weight.detach().clone(),
                )
            )
        self.by_name = {layer.name: layer for layer in self.layers}
        self.originals = {name: self.model.get_submodule(name) for name in names}
        dense = [(layer.params(layer.full_rank), layer.flops(layer.full_rank)) for layer in self]
        # Everything the ranks do not change: biases, norms, excluded layers, attention.
        self.other_params = self.total_params - sum(p for p, _ in dense)
        self.other_flops = max(0, self.total_flops - sum(f for _, f in dense))
        self.current: dict[str, int] = {layer.name: layer.full_rank for layer in self.layers}

    def __iter__(self):
        return iter(self.layers)

    @torch.no_grad()
    def _output_positions(self, names: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        hooks = []
        for name in names:
            module = self.model.get_submodule(name)
            width = module.out_features if isinstance(module, nn.Linear) else module.out_channels

            def record(_module, _inputs, output, name=name, width=width):
                found[name] = max(1, output.numel() // width)

            hooks.append(module.register_forward_hook(record))
        try:
            self.model(torch.zeros((1, *self.input_shape), device=self.device))
        finally:
            for hook in hooks:
                hook.remove()
        return {name: found.get(name, 1) for name in names}

    def effective(self, ranks: dict[str, int]) -> dict[str, int]:
        return {name: self.by_name[name].effective_rank(rank) for name, rank in ranks.items()}

    def kept(self, ranks: dict[str, int]) -> tuple[float, float]:
        """(params kept, FLOPs kept) as shares of the uncompressed model."""
        params = self.other_params + sum(self.by_name[n].params(r) for n, r in ranks.items())
        flops = self.other_flops + sum(self.by_name[n].flops(r) for n, r in ranks.items())
        return params / self.total_params, flops / max(self.total_flops, 1)

    @torch.no_grad()
    def set_ranks(self, ranks: dict[str, int]) -> None:
        """Put rank-r versions of the layers into the working model (full rank = original).

        A paying rank becomes the two thin layers `to_lowrank` would build, so candidates
        are evaluated in the compact form: the more compressed, the faster the check.
        """
        for name, rank in self.effective(ranks).items():
            if self.current.get(name) == rank:
                continue
            layer = self.by_name[name]
            original = self.originals[name]
            if rank >= layer.full_rank:
                replacement = original
            elif name and type(original) in (nn.Linear, nn.Conv2d):
                replacement = _thin_pair(original, layer, rank)
            else:  # a layer its parent reads directly: truncate the weight in place
                replacement = original
                approx = (layer.u[:, :rank] * layer.s[:rank]) @ layer.vh[:rank]
                original.weight.copy_(approx.reshape(original.weight.shape))
            if rank >= layer.full_rank:
                original.weight.copy_(layer.weight)
            _put(self.model, name, replacement)
            self.current[name] = rank

    def full_ranks(self) -> dict[str, int]:
        return {layer.name: layer.full_rank for layer in self.layers}


def _thin_pair(dense: nn.Module, layer: Layer, rank: int) -> nn.Sequential:
    """The two-layer form of a rank-r approximation, built from the cached SVD."""
    root = layer.s[:rank].sqrt()
    first, second = root[:, None] * layer.vh[:rank], layer.u[:, :rank] * root
    kw = {"device": first.device, "dtype": dense.weight.dtype}
    if isinstance(dense, nn.Linear):
        pair = LowRankLinear(
            dense.in_features, dense.out_features, rank, dense.bias is not None, **kw
        )
    else:
        pair = LowRankConv2d(dense, rank, **kw)
    pair[0].weight.copy_(first.reshape(pair[0].weight.shape))
    pair[1].weight.copy_(second.reshape(pair[1].weight.shape))
    if dense.bias is not None:
        pair[1].bias.copy_(dense.bias)
    return pair.eval()


def _put(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


class BudgetFamily:
    """Allocations that remove singular values in order of energy share per cost saved."""

    def __init__(self, problem: RankProblem, target: str) -> None:
        self.problem = problem
        self.target = target
        entries = []  # (score, layer index, singular value index)
        for index, layer in enumerate(problem.layers):
            m, n = layer.shape
            saved = (m + n) * (layer.positions if target == "flops" else 1)
            energy = layer.s.double().cpu() ** 2
            share = (energy / energy.sum().clamp_min(1e-300)).numpy()
            # The top singular value is never removed: a layer of rank 0 kills the network.
            for k in range(1, layer.full_rank):
                entries.append((share[k] / saved, index, k))
        entries.sort(key=lambda e: (e[0], -e[2]))
        self.layer_order = np.array([e[1] for e in entries], dtype=np.int64)
        self.removable = len(entries)
        self.cost = self._cost_after_removals()

    def _cost(self, ranks: dict[str, int]) -> float:
        params, flops = self.problem.kept(ranks)
        return flops if self.target == "flops" else params

    def _cost_after_removals(self) -> np.ndarray:
        """cost[k] = kept share after removing the first k singular values of the order."""
        layers = self.problem.layers
        ranks = [layer.full_rank for layer in layers]
        per_layer = [self._layer_cost(layer, layer.full_rank) for layer in layers]
        base = self._cost(self.problem.full_ranks()) - sum(per_layer)
        total = sum(per_layer)
        cost = np.empty(self.removable + 1)
        cost[0] = base + total
        for k, index in enumerate(self.layer_order, start=1):
            ranks[index] -= 1
            new = self._layer_cost(layers[index], ranks[index])
            total += new - per_layer[index]
            per_layer[index] = new
            cost[k] = base + total
        return cost

    def _layer_cost(self, layer: Layer, rank: int) -> float:
        if self.target == "flops":
            return layer.flops(rank) / max(self.problem.total_flops, 1)
        return layer.params(rank) / self.problem.total_params

    def ranks_after(self, removed: int) -> dict[str, int]:
        removed = int(min(max(removed, 0), self.removable))
        counts = np.bincount(self.layer_order[:removed], minlength=len(self.problem.layers))
        return {
            layer.name: layer.effective_rank(layer.full_rank - int(counts[i]))
            for i, layer in enumerate(self.problem.layers)
        }

    def removals_for(self, share: float) -> int:
        """Fewest removals whose kept share is <= `share` (all of them if unreachable)."""
        # cost is non-increasing in k; searchsorted needs ascending, so negate.
        k = int(np.searchsorted(-self.cost, -share, side="left"))
        return min(k, self.removable)

    def canonical(self, removed: int) -> int:
        """The fewest removals giving the same allocation (removals in a layer still above
        its break-even rank change nothing: the layer stays dense at full rank)."""
        return self.removals_for(float(self.cost[int(min(max(removed, 0), self.removable))]))

    def ranks_at(self, share: float) -> dict[str, int]:
        return self.ranks_after(self.removals_for(share))

    @property
    def smallest_share(self) -> float:
        return float(self.cost[-1])


def uniform_ranks(problem: RankProblem, keep_fraction: float) -> dict[str, int]:
    """Every layer keeps ceil(keep_fraction * full rank) singular values (at least 1)."""
    return {layer.name: max(1, math.ceil(keep_fraction * layer.full_rank)) for layer in problem}


def global_ranks(problem: RankProblem, keep_fraction: float) -> dict[str, int]:
    """Keep the largest keep_fraction of all singular values, each normalised by its layer's
    largest; every layer keeps at least one."""
    pooled = torch.cat(
        [(layer.s / layer.s[0].clamp_min(1e-30)).double().cpu() for layer in problem]
    )
    keep = max(1, math.ceil(keep_fraction * pooled.numel()))
    threshold = torch.sort(pooled, descending=True).values[keep - 1].item()
    return {
        layer.name: max(
            1, int((layer.s.double().cpu() / layer.s[0].clamp_min(1e-30).item() >= threshold).sum())
        )
        for layer in problem
    }


def eval_sample_count(total: int, flops_per_sample: int, device: torch.device) -> int:
    budget = EVAL_FLOPS_CUDA if device.type == "cuda" else EVAL_FLOPS_CPU
    wanted = int(budget / max(flops_per_sample, 1))
    return min(total, max(MIN_EVAL_SAMPLES, min(MAX_EVAL_SAMPLES, wanted)))


@torch.no_grad()
def _correct(model: nn.Module, batches: Batches, amp: bool, channels_last: bool) -> torch.Tensor:
    """Per-sample correctness (bool, CPU) of `model` over `batches`."""
    marks = []
    with autocast_context(batches.device, amp):
        for inputs, labels in batches:
            if channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            marks.append(model(inputs).argmax(1) == labels)
    return torch.cat(marks).cpu() if marks else torch.zeros(0, dtype=torch.bool)


class _Evaluator:
    """Validation accuracy of truncated allocations, compared sample by sample with the
    uncompressed model on the same samples."""

    def __init__(
        self,
        problem: RankProblem,
        val_dataset: Any,
        *,
        amp: bool,
        channels_last: bool,
        should_stop: StopCheck,
        sample_limit: int | None,
        max_drop: float = 0.0,
    ) -> None:
        self.problem = problem
        self.amp, self.channels_last = amp, channels_last
        self.should_stop = should_stop
        self.max_drop = max_drop
        device = problem.device
        total = len(val_dataset)
        limit = sample_limit or eval_sample_count(total, problem.total_flops, device)
        self.subset = Batches(val_dataset, EVAL_BATCH, device, limit=min(limit, total))
        # The chosen point is re-checked on a larger share of the split (the whole split
        # when affordable): the search itself looked at `subset` many times.
        self.verify_limit = min(total, VERIFY_FACTOR * self.subset.count)
        self.full = self.subset if self.verify_limit <= self.subset.count else None
        self.val_dataset = val_dataset
        self.evaluations = 0
        self.reference: dict[int, torch.Tensor] = {}  # id(batches) -> reference correctness

    def _batches(self, full: bool) -> Batches:
        if full and self.full is None:
            self.full = Batches(
                self.val_dataset, EVAL_BATCH, self.problem.device, limit=self.verify_limit
            )
        return self.full if full else self.subset

    def _marks(self, ranks: dict[str, int], batches: Batches) -> torch.Tensor:
        if self.should_stop():
            raise Cancelled("cancelled during the rank search")
        self.problem.set_ranks(ranks)
        self.evaluations += 1
        return _correct(self.problem.model, batches, self.amp, self.channels_last)

    def reference_accuracy(self, *, full: bool = False) -> float:
        batches = self._batches(full)
        if id(batches) not in self.reference:
            self.reference[id(batches)] = self._marks(self.problem.full_ranks(), batches)
        return self.reference[id(batches)].double().mean().item()

    def accuracy(self, ranks: dict[str, int], *, full: bool = False) -> float:
        return self.check(ranks, full=full)[0]

    def check(self, ranks: dict[str, int], *, full: bool = False) -> tuple[float, bool]:
        """(accuracy, whether the drop stays within max_drop with confidence).

        The drop is measured on the same samples as the reference, and must stay within
        the tolerance after adding CONFIDENCE_Z standard errors of that paired
        difference, so that the tolerance also holds on unseen data (the test split)
        rather than only on the samples that chose the ranks.
        """
        self.reference_accuracy(full=full)
        batches = self._batches(full)
        reference = self.reference[id(batches)]
        marks = self._marks(ranks, batches)
        count = max(len(marks), 1)
        lost = int((reference & ~marks).sum())
        gained = int((~reference & marks).sum())
        drop = (lost - gained) / count
        margin = CONFIDENCE_Z * math.sqrt(lost + gained) / count
        return marks.double().mean().item(), drop + margin <= self.max_drop + 1e-12

    @property
    def subset_is_full(self) -> bool:
        return self.full is self.subset


def _point(problem: RankProblem, ranks: dict[str, int], accuracy: float | None) -> dict[str, Any]:
    params, flops = problem.kept(ranks)
    return {"params_kept": params, "flops_kept": flops, "val_accuracy": accuracy}


def _search_accuracy(
    problem: RankProblem,
    family: BudgetFamily,
    evaluator: _Evaluator,
    progress: ProgressCallback,
) -> RankChoice:
    """Fewest params/FLOPs (along the budget family) within the evaluator's tolerance."""
    reference = evaluator.reference_accuracy()
    points: dict[int, tuple[float, bool]] = {0: (reference, True)}  # removals -> result

    def within(removed: int) -> bool:
        removed = family.canonical(removed)
        if removed not in points:
            points[removed] = evaluator.check(family.ranks_after(removed))
        return points[removed][1]

    # Coarse pass: shrink the kept share geometrically until accuracy leaves tolerance.
    good, bad = 0, None
    share = 1.0
    steps_guess = max(
        1, math.ceil(math.log(max(family.smallest_share, 1e-6)) / math.log(GRID_RATIO))
    )
    while True:
        share *= GRID_RATIO
        removed = family.canonical(family.removals_for(share))
        if removed <= good:
            if family.cost[good] <= family.smallest_share + 1e-12:
                break
            continue
        progress(min(0.7, 0.7 * len(points) / (steps_guess + 1)), f"kept {share:.1%}")
        if within(removed):
            good = removed
            if removed >= family.removable:
                break
        else:
            bad = removed
            break
    # Fine pass: bisection on the removal count between the last good and first bad point.
    if bad is not None:
        for step in range(BISECTION_STEPS):
            middle = family.canonical((good + bad) // 2)
            if middle == good:
                # The halfway point is the same allocation as `good`: try the next one.
                middle = family.canonical(family.removals_for(float(family.cost[good]) - 1e-12))
            if middle in (good, bad):
                break
            progress(0.7 + 0.2 * step / BISECTION_STEPS, "refining")
            if within(middle):
                good = middle
            else:
                bad = middle

    # The search used a fixed validation subset; confirm on more samples and step back to
    # the next less compressed good point if the subset was optimistic.
    passing = sorted((k for k, (_, ok) in points.items() if ok), reverse=True)
    if evaluator.subset_is_full:
        chosen, chosen_accuracy, full_reference = passing[0], points[passing[0]][0], reference
    else:
        full_reference = evaluator.reference_accuracy(full=True)
        chosen, chosen_accuracy = 0, full_reference
        for removed in passing[:MAX_VERIFICATIONS]:
            if removed == 0:
                break
            accuracy, ok = evaluator.check(family.ranks_after(removed), full=True)
            if ok:
                chosen, chosen_accuracy = removed, accuracy
                break
    progress(1.0, "chosen")
    ranks = family.ranks_after(chosen)
    params, flops = problem.kept(ranks)
    curve = [
        _point(problem, family.ranks_after(k), accuracy)
        for k, (accuracy, _) in sorted(points.items())
    ]
    return RankChoice(
        ranks=ranks,
        params_kept=params,
        flops_kept=flops,
        val_accuracy=chosen_accuracy,
        reference_val_accuracy=full_reference,
        curve=curve,
        search={"subset_reference_accuracy": reference},
        verified_samples=evaluator.subset.count
        if evaluator.subset_is_full
        else evaluator.verify_limit,
    )


def _curve_for(
    problem: RankProblem,
    family: BudgetFamily,
    evaluator: _Evaluator,
    chosen: dict[str, int],
    progress: ProgressCallback,
) -> tuple[list[dict[str, Any]], float, float]:
    """A few points of the budget family for plots, plus the chosen allocation (full val)."""
    shares = [1.0, 0.5, 0.25, 0.12, 0.06]
    curve = []
    for index, share in enumerate(shares):
        if share < family.smallest_share:
            break
        progress(0.8 * index / len(shares), f"kept {share:.0%}")
        ranks = family.ranks_at(share)
        curve.append(_point(problem, ranks, evaluator.accuracy(ranks)))
    reference = evaluator.reference_accuracy(full=True)
    accuracy = evaluator.accuracy(chosen, full=True)
    progress(1.0, "chosen")
    return curve, reference, accuracy


def choose_ranks(
    model: nn.Module,
    names: list[str],
    compress: CompressSpec,
    *,
    val_dataset: Any,
    input_shape: tuple[int, ...],
    device: str | torch.device = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    total_params: int | None = None,
    total_flops: int | None = None,
    should_stop: StopCheck = never_stop,
    on_progress: ProgressCallback | None = None,
    sample_limit: int | None = None,
) -> RankChoice:
    """Ranks for the layers `names` of the merged dense `model` (which is not modified).

    Accuracy is measured on `val_dataset` only (never on test data). `on_progress`
    receives (fraction of the search done, message).
    """
    progress = on_progress or (lambda _fraction, _message: None)
    problem = RankProblem(
        model,
        names,
        input_shape,
        device=device,
        total_params=total_params,
        total_flops=total_flops,
    )
    evaluator = _Evaluator(
        problem,
        val_dataset,
        amp=amp,
        channels_last=channels_last,
        should_stop=should_stop,
        sample_limit=sample_limit,
        max_drop=compress.max_accuracy_drop,
    )
    family = BudgetFamily(problem, compress.target)

    if compress.strategy == "accuracy":
        choice = _search_accuracy(problem, family, evaluator, progress)
    else:
        if compress.strategy == "budget":
            ranks = family.ranks_at(compress.budget)
        elif compress.strategy == "uniform":
            ranks = problem.effective(uniform_ranks(problem, compress.keep_fraction))
        else:
            ranks = problem.effective(global_ranks(problem, compress.keep_fraction))
        curve, reference, accuracy = _curve_for(problem, family, evaluator, ranks, progress)
        params, flops = problem.kept(ranks)
        choice = RankChoice(
            ranks=ranks,
            params_kept=params,
            flops_kept=flops,
            val_accuracy=accuracy,
            reference_val_accuracy=reference,
            curve=curve,
        )
        if compress.strategy == "budget" and choice_cost(choice, compress.target) > compress.budget:
            choice.search["budget_unreachable"] = True
    choice.spectra = {layer.name: layer.s.detach().to("cpu", torch.float64) for layer in problem}
    choice.search.update(
        {
            "evaluations": evaluator.evaluations,
            "val_samples": evaluator.subset.count,
            "strategy": compress.strategy,
            "target": compress.target,
        }
    )
    return choice


def choice_cost(choice: RankChoice, target: str) -> float:
    return choice.flops_kept if target == "flops" else choice.params_kept
