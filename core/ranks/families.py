"""Allocations of ranks across layers: the budget family, and the uniform and global rules.

The budget allocation at share b is a one-parameter family: singular values are
removed in increasing order of (their share of the layer's energy) / (cost they
save). Relative energy, not raw sigma^2, because a normalisation layer usually
follows a weight layer and makes its output scale irrelevant.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from core.ranks.problem import Layer, RankProblem


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

    def cost_of(self, ranks: dict[str, int]) -> float:
        """The share of the target (params or FLOPs) that `ranks` keep."""
        params, flops = self.problem.kept(ranks)
        return flops if self.target == "flops" else params

    def _cost_after_removals(self) -> np.ndarray:
        """cost[k] = kept share after removing the first k singular values of the order."""
        layers = self.problem.layers
        ranks = [layer.full_rank for layer in layers]
        per_layer = [self._layer_cost(layer, layer.full_rank) for layer in layers]
        base = self.cost_of(self.problem.full_ranks()) - sum(per_layer)
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
