"""The accuracy search's tolerance held after fine-tuning (compress.finetune_search).

The rank search (core.ranks) keeps the most compressed allocation whose validation
accuracy straight after truncation stays within the tolerance. When the job fine-tunes
afterwards, that choice is too cautious wherever fine-tuning wins back what truncation
cost (a CNN trained from scratch: bench/README.md, "Against the peers"). So the job
walks on along the same budget family (RankChoice.beyond, least compressed first),
fine-tunes each allocation and checks it on the whole validation split with the
search's own paired rule, and keeps the most compressed one that passes; it stops at
the first that fails. When none passes, the search's own choice is fine-tuned, as a
job without this option does. The test split is never looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.ranks import RankChoice, paired_check


@dataclass
class FinetuneSearch:
    """What the walk needs from the job: build the compact model of an allocation,
    fine-tune it in place (returning the job's record of that fine-tuning; the text
    says which one, for the progress), mark which validation samples a model gets
    right, and the kept (params, FLOPs) shares of a compact model."""

    build: Callable[[dict[str, int]], nn.Module]
    finetune: Callable[[nn.Module, str], Any]
    val_marks: Callable[[nn.Module], torch.Tensor]
    kept: Callable[[nn.Module], tuple[float, float]]
    max_drop: float


@dataclass
class Searched:
    """The allocation kept, its fine-tuned compact model and the record of that
    fine-tuning (what FinetuneSearch.finetune returned), its validation accuracy before
    fine-tuning (the search curve's measure), and every allocation tried (for the
    report)."""

    ranks: dict[str, int]
    lowrank: nn.Module
    finetuned: Any
    val_before: float | None
    tried: list[dict[str, Any]] = field(default_factory=list)
    # The search's own choice (kept shares, validation accuracy) the walk started from.
    start: dict[str, Any] = field(default_factory=dict)


def search_after_finetune(
    search: FinetuneSearch, choice: RankChoice, reference_marks: torch.Tensor
) -> Searched:
    """The most compressed allocation of `choice.beyond` that is within the tolerance of
    the uncompressed model (`reference_marks`, the whole validation split) after
    fine-tuning; else `choice` itself, fine-tuned."""

    def accuracy(model: nn.Module) -> tuple[float, bool]:
        return paired_check(reference_marks, search.val_marks(model), search.max_drop)

    kept: Searched | None = None
    tried: list[dict[str, Any]] = []
    for ranks in choice.beyond:
        model = search.build(ranks)
        params_kept, flops_kept = search.kept(model)
        before, _ = accuracy(model)
        finetuned = search.finetune(
            model, f"trying {params_kept:.1%} of the params, {flops_kept:.1%} of the FLOPs"
        )
        after, within = accuracy(model)
        tried.append(
            {
                "params_kept": params_kept,
                "flops_kept": flops_kept,
                "val_accuracy_before_finetune": before,
                "val_accuracy": after,
                "within_tolerance": within,
            }
        )
        if not within:
            break
        kept = Searched(dict(ranks), model, finetuned, before)
    if kept is None:
        model = search.build(choice.ranks)
        finetuned = search.finetune(model, "none smaller within the tolerance: the search's choice")
        kept = Searched(dict(choice.ranks), model, finetuned, choice.val_accuracy)
    kept.tried, kept.start = tried, dict(choice.chosen)
    return kept
