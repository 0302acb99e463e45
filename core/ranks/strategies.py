"""Rank strategies as objects in a table keyed by `CompressSpec.strategy`, and
`choose_ranks`, which runs the one a spec names.

A strategy receives the problem (SVDs, costs), the budget family and the paired
evaluator, and returns a RankChoice. Adding one is a class and a table entry (and
the name in `core.spec.RankStrategy`); `choose_ranks` itself does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.events import StopCheck, never_stop
from core.lowrank import Svd
from core.ranks.evaluation import PairedEvaluator
from core.ranks.families import BudgetFamily, global_ranks, uniform_ranks
from core.ranks.problem import RankChoice, RankProblem, choice_cost
from core.ranks.search import (
    ProgressCallback,
    allocations_beyond,
    curve_for,
    search_accuracy,
)
from core.spec import CompressSpec


@dataclass
class RankContext:
    """What a strategy works with, built once per `choose_ranks` call."""

    problem: RankProblem
    family: BudgetFamily
    evaluator: PairedEvaluator
    compress: CompressSpec
    progress: ProgressCallback


class Strategy(ABC):
    @abstractmethod
    def choose(self, context: RankContext) -> RankChoice:
        """The ranks of every layer, with their validation accuracy."""


class AccuracySearch(Strategy):
    """The fewest params/FLOPs whose validation accuracy stays within max_accuracy_drop
    of the uncompressed model's (the default)."""

    def choose(self, context: RankContext) -> RankChoice:
        choice = search_accuracy(
            context.problem, context.family, context.evaluator, context.progress
        )
        choice.beyond = allocations_beyond(context.family, choice.ranks)
        return choice


class FixedAllocation(Strategy):
    """Ranks fixed without looking at accuracy; they are evaluated afterwards on the
    validation split, beside a few points of the budget family for the plots."""

    @abstractmethod
    def ranks(self, context: RankContext) -> dict[str, int]:
        """Effective ranks (each paying or full) of every layer."""

    def choose(self, context: RankContext) -> RankChoice:
        problem = context.problem
        ranks = self.ranks(context)
        curve, reference, accuracy = curve_for(
            problem, context.family, context.evaluator, ranks, context.progress
        )
        return problem.choice(ranks, accuracy, reference, curve)


class BudgetAllocation(FixedAllocation):
    """The allocation with the least error for a kept share of params/FLOPs."""

    def ranks(self, context: RankContext) -> dict[str, int]:
        return context.family.ranks_at(context.compress.budget)

    def choose(self, context: RankContext) -> RankChoice:
        choice = super().choose(context)
        compress = context.compress
        if choice_cost(choice, compress.target) > compress.budget:
            # Even one singular value per layer costs more than the budget.
            choice.search["budget_unreachable"] = True
        return choice


class UniformAllocation(FixedAllocation):
    """Every layer keeps the same share of its singular values."""

    def ranks(self, context: RankContext) -> dict[str, int]:
        problem = context.problem
        return problem.effective(uniform_ranks(problem, context.compress.keep_fraction))


class GlobalAllocation(FixedAllocation):
    """Singular values of all layers, each divided by its layer's largest, are pooled
    and the smallest are dropped until keep_fraction of them remain."""

    def ranks(self, context: RankContext) -> dict[str, int]:
        problem = context.problem
        return problem.effective(global_ranks(problem, context.compress.keep_fraction))


STRATEGIES: dict[str, Strategy] = {
    "accuracy": AccuracySearch(),
    "budget": BudgetAllocation(),
    "uniform": UniformAllocation(),
    "global": GlobalAllocation(),
}


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
    bases: dict[str, Svd] | None = None,
) -> RankChoice:
    """Ranks for the layers `names` of the merged dense `model` (which is not modified).

    Accuracy is measured on `val_dataset` only (never on test data). `on_progress`
    receives (fraction of the search done, message). `bases` replace the layers' plain
    SVDs (core.calibration's data-aware truncation).
    """
    strategy = STRATEGIES[compress.strategy]
    problem = RankProblem(
        model,
        names,
        input_shape,
        device=device,
        total_params=total_params,
        total_flops=total_flops,
        bases=bases,
    )
    evaluator = PairedEvaluator(
        problem,
        val_dataset,
        amp=amp,
        channels_last=channels_last,
        should_stop=should_stop,
        sample_limit=sample_limit,
        max_drop=compress.max_accuracy_drop,
    )
    context = RankContext(
        problem=problem,
        family=BudgetFamily(problem, compress.target),
        evaluator=evaluator,
        compress=compress,
        progress=on_progress or (lambda _fraction, _message: None),
    )
    choice = strategy.choose(context)
    if not bases:  # a data-aware S is not the weight's spectrum, which the report shows
        choice.spectra = {
            layer.name: layer.s.detach().to("cpu", torch.float64) for layer in problem
        }
    choice.search.update(
        {
            "evaluations": evaluator.evaluations,
            "val_samples": evaluator.subset.count,
            "strategy": compress.strategy,
            "target": compress.target,
        }
    )
    return choice
