"""Choosing the rank of every layer after LoRITa training.

Strategies (CompressSpec.strategy, the table `STRATEGIES`):
- uniform: every layer keeps the same share of its singular values;
- global:  singular values of all layers, each divided by its layer's largest, are
           pooled and the smallest are dropped until keep_fraction of them remain;
- budget:  the allocation with the least error for a kept share of params/FLOPs;
- accuracy (default): the fewest params/FLOPs whose validation accuracy stays within
           max_accuracy_drop of the uncompressed model's.

The package, by purpose:
- problem:     every layer's SVD and the cost model (RankProblem, RankChoice);
- families:    allocations across layers (BudgetFamily, uniform and global rules);
- evaluation:  paired validation accuracy of a candidate against the uncompressed model;
- search:      the accuracy search along the budget family, and the plotted curve;
- strategies:  the strategy objects and `choose_ranks`.
Layers are changed only through `core.lowrank`, so every candidate evaluated is the
model `to_lowrank` exports.
"""

from core.ranks.evaluation import PairedEvaluator, eval_sample_count, paired_check
from core.ranks.families import BudgetFamily, global_ranks, uniform_ranks
from core.ranks.problem import Layer, RankChoice, RankProblem, choice_cost
from core.ranks.search import ProgressCallback, curve_for, search_accuracy
from core.ranks.strategies import STRATEGIES, RankContext, Strategy, choose_ranks

__all__ = [
    "STRATEGIES",
    "BudgetFamily",
    "Layer",
    "PairedEvaluator",
    "ProgressCallback",
    "RankChoice",
    "RankContext",
    "RankProblem",
    "Strategy",
    "choice_cost",
    "choose_ranks",
    "curve_for",
    "eval_sample_count",
    "global_ranks",
    "paired_check",
    "search_accuracy",
    "uniform_ranks",
]
