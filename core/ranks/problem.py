"""The rank problem of a merged model: every weight layer's SVD and what each rank costs.

Costs follow what is stored and run: a layer of rank r costs r*(m+n) parameters
(times its output positions for FLOPs) only when that is below the dense m*n; a rank
that does not pay off leaves the layer dense *at full rank* (truncating it would cost
accuracy and save nothing). So every reported rank is either a paying rank or the
full rank, and `core.lowrank.to_lowrank` builds exactly the costed model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.lowrank import Svd, pays_off, put_rank, set_submodule, weight_svd
from core.measure import count_flops, count_params


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
    # Allocations of the same family past the chosen one, least compressed first, for a
    # caller that can win accuracy back (fine-tuning: core.job.finetune_search).
    beyond: list[dict[str, int]] = field(default_factory=list)

    @property
    def chosen(self) -> dict[str, Any]:
        return {
            "params_kept": self.params_kept,
            "flops_kept": self.flops_kept,
            "val_accuracy": self.val_accuracy,
        }


def choice_cost(choice: RankChoice, target: str) -> float:
    return choice.flops_kept if target == "flops" else choice.params_kept


class RankProblem:
    """SVDs, costs and truncation of the weight layers of a (merged, dense) model.

    Works on its own copy of the model; `set_ranks` puts truncated layers into it.
    `bases` ({name: (U, S, V^T)}, core.calibration's data-aware ones) replace the plain
    SVD of the layers they name: costs, allocations and candidates then all follow them.
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
        bases: dict[str, Svd] | None = None,
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
            u, s, vh = bases[name] if bases and name in bases else weight_svd(module)
            as_device = {"device": self.device, "dtype": torch.float32}
            self.layers.append(
                Layer(
                    name=name,
                    shape=(u.shape[0], vh.shape[1]),
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

    def choice(
        self,
        ranks: dict[str, int],
        val_accuracy: float | None,
        reference_val_accuracy: float | None,
        curve: list[dict[str, Any]],
        **details: Any,
    ) -> RankChoice:
        """The RankChoice of `ranks`, with the shares of params and FLOPs they keep;
        `details` are RankChoice's other fields (search, verified_samples)."""
        params, flops = self.kept(ranks)
        return RankChoice(
            ranks, params, flops, val_accuracy, reference_val_accuracy, curve, **details
        )

    def point(self, ranks: dict[str, int], accuracy: float | None) -> dict[str, Any]:
        """One point of an accuracy-versus-size curve."""
        params, flops = self.kept(ranks)
        return {"params_kept": params, "flops_kept": flops, "val_accuracy": accuracy}

    @torch.no_grad()
    def set_ranks(self, ranks: dict[str, int]) -> None:
        """Put rank-r versions of the layers into the working model (full rank = original).

        A paying rank becomes the two thin layers `to_lowrank` would build (from the
        cached SVD), so candidates are evaluated in the compact form: the more
        compressed, the faster the check.
        """
        for name, rank in self.effective(ranks).items():
            if self.current.get(name) == rank:
                continue
            layer = self.by_name[name]
            original = self.originals[name]
            if rank >= layer.full_rank:
                original.weight.copy_(layer.weight)
                self.model = set_submodule(self.model, name, original)
            else:
                svd = (layer.u, layer.s, layer.vh)
                self.model = put_rank(self.model, name, original, rank, svd)
            self.current[name] = rank

    def full_ranks(self) -> dict[str, int]:
        return {layer.name: layer.full_rank for layer in self.layers}
