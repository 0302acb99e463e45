"""Validation accuracy of candidate allocations, compared with the uncompressed model.

Each candidate costs one pass over a capped, fixed (seeded) subset of the validation
split with its truncated layers put into the problem's working model. The drop is
counted on the same samples as the reference (a paired comparison), and a candidate
passes only when the drop plus CONFIDENCE_Z standard errors of that paired difference
stays within the tolerance, so that it also holds on unseen data (the test split)
rather than only on the samples that chose the ranks.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from core.batching import Batches
from core.errors import Cancelled
from core.events import StopCheck
from core.measure import evaluate
from core.ranks.problem import RankProblem
from core.tolerance import within_drop

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


def eval_sample_count(total: int, flops_per_sample: int, device: torch.device) -> int:
    budget = EVAL_FLOPS_CUDA if device.type == "cuda" else EVAL_FLOPS_CPU
    wanted = int(budget / max(flops_per_sample, 1))
    return min(total, max(MIN_EVAL_SAMPLES, min(MAX_EVAL_SAMPLES, wanted)))


def paired_check(
    reference: torch.Tensor, marks: torch.Tensor, max_drop: float
) -> tuple[float, bool]:
    """(accuracy of `marks`, whether its drop from `reference` stays within `max_drop`
    with confidence); both are per-sample correctness over the same samples."""
    count = max(len(marks), 1)
    lost = int((reference & ~marks).sum())
    gained = int((~reference & marks).sum())
    drop = (lost - gained) / count
    margin = CONFIDENCE_Z * math.sqrt(lost + gained) / count
    return marks.double().mean().item(), within_drop(drop + margin, max_drop)


class PairedEvaluator:
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
        """Per-sample correctness (bool, CPU) of the model at `ranks` over `batches`."""
        if self.should_stop():
            raise Cancelled("cancelled during the rank search")
        self.problem.set_ranks(ranks)
        self.evaluations += 1
        result = evaluate(
            self.problem.model,
            batches,
            amp=self.amp,
            channels_last=self.channels_last,
            per_sample=True,
        )
        return result.correct

    def reference_accuracy(self, *, full: bool = False) -> float:
        batches = self._batches(full)
        if id(batches) not in self.reference:
            self.reference[id(batches)] = self._marks(self.problem.full_ranks(), batches)
        return self.reference[id(batches)].double().mean().item()

    def accuracy(self, ranks: dict[str, int], *, full: bool = False) -> float:
        return self.check(ranks, full=full)[0]

    def check(self, ranks: dict[str, int], *, full: bool = False) -> tuple[float, bool]:
        """(accuracy, whether the drop stays within max_drop with confidence)."""
        self.reference_accuracy(full=full)
        batches = self._batches(full)
        reference = self.reference[id(batches)]
        return paired_check(reference, self._marks(ranks, batches), self.max_drop)

    @property
    def subset_is_full(self) -> bool:
        return self.full is self.subset
