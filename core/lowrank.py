"""Rank truncation of a merged model, and its compact two-layer form.

After LoRITa training and merging, each weight layer is one dense matrix (a conv
kernel is read as c_out x (c_in*k*k)). Keeping its r largest singular values gives
the best rank-r approximation (Eckart-Young). Two forms of the truncated model:

- ``truncate``: same structure, each weight replaced by its rank-r approximation
  (what model.safetensors stores; loads into the original architecture).
- ``to_lowrank``: each truncated layer stored as two thin layers, Linear(in, r) ->
  Linear(r, out) or Conv2d(c_in, r, k, ...) -> Conv2d(r, c_out, 1), which is smaller
  and faster. A rank only pays when ``r * (m + n) < m * n``; layers where it does not
  stay dense with their truncated weight, so both forms compute the same function.
  ``dense_from_lowrank`` multiplies the pairs back into the original structure.

This module is the only place that changes a model's layers: the rank search puts
its candidates into a working copy through ``put_rank``, the same rule as
``to_lowrank``, so every candidate is exactly the model that would be exported.

SVDs run in float64 on the CPU for accuracy (weights are small); results are cast
back to each layer's dtype and device. A factorized model is merged first. Every
function that truncates also takes a layer's basis in place of its SVD: any
(U, S, V^T) with U S V^T = W, such as the data-aware bases of ``core.calibration``,
whose rank-r cut keeps the layer's output on real inputs rather than its weight.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from core.factorize import COMPOSED_TYPES, eligible_layers, merge


class LowRankLinear(nn.Sequential):
    """Linear(in, rank, bias=False) -> Linear(rank, out, bias): a rank-limited Linear."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, **kw):
        super().__init__(
            nn.Linear(in_features, rank, bias=False, **kw),
            nn.Linear(rank, out_features, bias=bias, **kw),
        )
        self.rank = rank


class LowRankConv2d(nn.Sequential):
    """Conv2d(c_in, rank, k, ...) -> Conv2d(rank, c_out, 1, bias): a rank-limited Conv2d."""

    def __init__(self, dense: nn.Conv2d, rank: int, **kw):
        super().__init__(
            nn.Conv2d(
                dense.in_channels,
                rank,
                dense.kernel_size,
                stride=dense.stride,
                padding=dense.padding,
                dilation=dense.dilation,
                bias=False,
                padding_mode=dense.padding_mode,
                **kw,
            ),
            nn.Conv2d(rank, dense.out_channels, 1, bias=dense.bias is not None, **kw),
        )
        self.rank = rank


LOWRANK_TYPES = (LowRankLinear, LowRankConv2d)
Svd = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (U, S, V^T), S descending


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The layer's weight as a 2-D (out x fan_in) matrix, detached."""
    weight = module.merged_weight() if isinstance(module, COMPOSED_TYPES) else module.weight
    return weight.detach().reshape(weight.shape[0], -1)


def weight_svd(module: nn.Module) -> Svd:
    """(U, S, V^T) of the layer's weight matrix, in float64 on the CPU."""
    w = weight_matrix(module).to("cpu", torch.float64)
    return torch.linalg.svd(w, full_matrices=False)


def truncated_matrix(svd: Svd, rank: int) -> torch.Tensor:
    """U_r S_r V_r^T: the best rank-r approximation (Eckart-Young), as a 2-D matrix."""
    u, s, vh = svd
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def _weight_layer_names(model: nn.Module) -> list[str]:
    eligible = set(eligible_layers(model))
    return [
        name
        for name, m in model.named_modules()
        if name in eligible or isinstance(m, COMPOSED_TYPES)
    ]


def singular_values(
    model: nn.Module, names: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """Singular values (float64, CPU, descending) of each weight layer's matrix.

    ``names`` defaults to every eligible layer (and every composed layer's product).
    """
    names = _weight_layer_names(model) if names is None else list(names)
    result = {}
    for name in names:
        w = weight_matrix(model.get_submodule(name)).to("cpu", torch.float64)
        result[name] = torch.linalg.svdvals(w)
    return result


def pays_off(m: int, n: int, r: int) -> bool:
    """Whether two factors of rank r (r*(m+n) numbers) are smaller than the m x n matrix."""
    return r * (m + n) < m * n


def _checked_layers(model: nn.Module, ranks: dict[str, int]) -> dict[str, nn.Module]:
    layers = {}
    for name, rank in ranks.items():
        try:
            module = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"no layer named {name!r} in the model") from error
        if not isinstance(module, (nn.Linear, nn.Conv2d)) or module.weight.dim() < 2:
            raise ValueError(f"{name!r} is not a Linear/Conv2d layer: {type(module).__name__}")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(f"{name!r} is a grouped convolution; it cannot be truncated")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise ValueError(f"rank for {name!r} must be an integer >= 0, got {rank!r}")
        layers[name] = module
    return layers


def _prepare(model: nn.Module, inplace: bool) -> nn.Module:
    if any(isinstance(m, COMPOSED_TYPES) for m in model.modules()):
        return merge(model, inplace=inplace)
    return model if inplace else copy.deepcopy(model)


def _truncated_weight(module: nn.Module, rank: int, svd: Svd | None) -> torch.Tensor:
    approx = truncated_matrix(weight_svd(module) if svd is None else svd, rank)
    return approx.reshape(module.weight.shape).to(module.weight)


def truncate(
    model: nn.Module,
    ranks: dict[str, int],
    inplace: bool = False,
    bases: dict[str, Svd] | None = None,
) -> nn.Module:
    """Same structure, with each named layer's weight replaced by its rank-r approximation.

    Layers not in ``ranks`` are untouched; a rank >= the full rank leaves the weight
    exactly as it is. ``bases`` ({name: (U, S, V^T)}, e.g. the data-aware ones of
    ``core.calibration``) replace the plain SVD of the layers they name.
    """
    model = _prepare(model, inplace)
    bases = bases or {}
    for name, module in _checked_layers(model, ranks).items():
        rank = ranks[name]
        if rank >= min(weight_matrix(module).shape):
            continue
        with torch.no_grad():
            module.weight.copy_(_truncated_weight(module, rank, bases.get(name)))
    return model


def _empty_pair(module: nn.Module, rank: int) -> nn.Sequential:
    """The two-layer skeleton of a rank-r ``module``, on its device and dtype."""
    w = module.weight
    kw = {"device": w.device, "dtype": w.dtype}
    if isinstance(module, nn.Linear):
        pair = LowRankLinear(
            module.in_features, module.out_features, rank, module.bias is not None, **kw
        )
    else:
        pair = LowRankConv2d(module, rank, **kw)
    pair.train(module.training)
    return pair


def split_layer(module: nn.Module, rank: int, svd: Svd | None = None) -> nn.Sequential:
    """Two thin layers computing the rank-r approximation of ``module``.

    ``svd`` is the layer's (U, S, V^T) when the caller already has it (the rank
    search keeps one per layer and tries many ranks), or another basis of it (a
    data-aware one); the plain SVD is computed otherwise.
    """
    u, s, vh = weight_svd(module) if svd is None else svd
    root = s[:rank].sqrt()  # split the singular values evenly: similar factor scales
    first, second = root[:, None] * vh[:rank], u[:, :rank] * root
    pair = _empty_pair(module, rank)
    with torch.no_grad():
        pair[0].weight.copy_(first.reshape(pair[0].weight.shape))
        pair[1].weight.copy_(second.reshape(pair[1].weight.shape))
        if module.bias is not None:
            pair[1].bias.copy_(module.bias)
    return pair


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``name`` in ``model``; returns the model (``new`` itself for the root)."""
    if not name:
        return new
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, new)
    return model


def put_rank(
    model: nn.Module, name: str, layer: nn.Module, rank: int, svd: Svd | None = None
) -> nn.Module:
    """Put the rank-``rank`` form of the dense ``layer`` at ``name`` into ``model``.

    The one rule of ``to_lowrank``: two thin layers when the rank pays off, else the
    layer itself with its weight truncated in place (a rank >= the full rank leaves it
    as it is). Subclasses (e.g. attention's out_proj) may be read by their parent
    directly, so only plain layers change structure. Returns the model (a new object
    only when ``name`` is the root).
    """
    m, n = weight_matrix(layer).shape
    replacement = layer
    if type(layer) in (nn.Linear, nn.Conv2d) and rank > 0 and pays_off(m, n, rank):
        replacement = split_layer(layer, rank, svd)
    elif rank < min(m, n):
        with torch.no_grad():
            layer.weight.copy_(_truncated_weight(layer, rank, svd))
    return set_submodule(model, name, replacement)


def to_lowrank(
    model: nn.Module,
    ranks: dict[str, int],
    inplace: bool = False,
    bases: dict[str, Svd] | None = None,
) -> nn.Module:
    """Like ``truncate``, but layers whose rank pays off become two thin layers.

    A layer named ``name`` becomes ``LowRankLinear``/``LowRankConv2d`` (an
    nn.Sequential), so its state-dict keys are ``name.0.weight``, ``name.1.weight``
    and ``name.1.bias``. A rank of 0 or one that does not pay off keeps the layer
    dense with its truncated weight. ``to_lowrank(m, r)(x) == truncate(m, r)(x)``
    up to float rounding. ``bases`` as for ``truncate``.
    """
    model = _prepare(model, inplace)
    bases = bases or {}
    for name, module in _checked_layers(model, ranks).items():
        model = put_rank(model, name, module, ranks[name], bases.get(name))
    return model


def lowrank_structure(model: nn.Module) -> dict[str, int]:
    """{qualified name: rank} of the layers ``to_lowrank`` split into two."""
    return {name: m.rank for name, m in model.named_modules() if isinstance(m, LOWRANK_TYPES)}


def apply_lowrank_structure(
    model: nn.Module, structure: dict[str, int], inplace: bool = False
) -> nn.Module:
    """Put empty two-layer replacements at ``structure``'s names into a dense model.

    Rebuilds the skeleton of a ``to_lowrank`` model from a freshly built dense one,
    so that ``load_state_dict`` of the saved low-rank weights works strictly.
    """
    if not inplace:
        model = copy.deepcopy(model)
    for name, module in _checked_layers(model, structure).items():
        model = set_submodule(model, name, _empty_pair(module, structure[name]))
    return model


def dense_from_lowrank(lowrank_model: nn.Module, template: nn.Module) -> nn.Module:
    """The inverse of ``to_lowrank``: a copy of the dense ``template`` (same architecture)
    holding the weights of ``lowrank_model``, each thin pair multiplied back into one
    matrix, so it computes the same function in the original structure."""
    dense = copy.deepcopy(template)
    state = dict(lowrank_model.state_dict())
    for name, module in lowrank_model.named_modules():
        if isinstance(module, LOWRANK_TYPES):
            first, second = module[0].weight, module[1].weight
            product = second.reshape(second.shape[0], -1) @ first.reshape(first.shape[0], -1)
            target = dense.get_submodule(name).weight
            state[f"{name}.weight"] = product.reshape(target.shape)
            state.pop(f"{name}.0.weight")
            state.pop(f"{name}.1.weight")
            if f"{name}.1.bias" in state:
                state[f"{name}.bias"] = state.pop(f"{name}.1.bias")
    dense.load_state_dict(state, strict=True)
    return dense
