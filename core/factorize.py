"""Turn any nn.Module into its LoRITa training form and back.

``factorize`` swaps every eligible weight layer for a composed one (core.layers);
``merge`` multiplies the factors back so the model has exactly its original module
structure and state-dict keys again: a merged model loads strictly into a freshly
built plain model of the same architecture.

Eligible layers are plain ``nn.Linear`` and ``nn.Conv2d`` with ``groups == 1``,
selected by qualified name with fnmatch globs (``exclude`` wins over ``include``).
Left plain on purpose:

- subclasses of Linear/Conv2d (their forward may do more than the plain layer);
- grouped and depthwise convolutions (their weight is not one matrix);
- the Linear layers inside ``nn.MultiheadAttention``: its forward reads
  ``out_proj.weight`` directly instead of calling the module, so a replacement
  would be bypassed (its packed q/k/v projection is a raw parameter anyway);
- layers whose weight tensor is shared with another module (tied weights), because
  factorizing one side would silently untie them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from fnmatch import fnmatchcase

from torch import nn

from core.layers import ComposedConv2d, ComposedLinear, check_init

COMPOSED_TYPES = (ComposedLinear, ComposedConv2d)


def _as_patterns(patterns: str | Iterable[str] | None) -> list[str] | None:
    if patterns is None:
        return None
    if isinstance(patterns, str):
        return [patterns]
    return list(patterns)


def _selected(name: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    if exclude and any(fnmatchcase(name, p) for p in exclude):
        return False
    return include is None or any(fnmatchcase(name, p) for p in include)


def _is_plain_weight_layer(module: nn.Module) -> bool:
    if type(module) is nn.Linear:
        return True
    return type(module) is nn.Conv2d and module.groups == 1


def _shared_weight_ids(model: nn.Module) -> set[int]:
    """ids of parameters that appear under more than one module."""
    owners: dict[int, set[int]] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), set()).add(id(module))
    return {pid for pid, mods in owners.items() if len(mods) > 1}


def eligible_layers(
    model: nn.Module,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> list[str]:
    """Qualified names of the layers ``factorize`` would replace, in module order.

    ``include``/``exclude`` are fnmatch globs (a string or a list) matched against the
    qualified name, e.g. ``"features.*"``; ``exclude`` wins. ``include=None`` takes all.
    """
    include, exclude = _as_patterns(include), _as_patterns(exclude)
    shared = _shared_weight_ids(model)
    attention_children = {
        id(child)
        for module in model.modules()
        if isinstance(module, nn.MultiheadAttention)
        for child in module.modules()
    }
    names = []
    for name, module in model.named_modules():
        if (
            _is_plain_weight_layer(module)
            and id(module) not in attention_children
            and id(module.weight) not in shared
            and _selected(name, include, exclude)
        ):
            names.append(name)
    return names


def _replace(model: nn.Module, replacements: dict[int, nn.Module]) -> nn.Module:
    """Swap modules (by identity) everywhere they are registered; returns the new root.

    A module registered under several names (shared) is replaced by one shared module.
    """
    if id(model) in replacements:
        return replacements[id(model)]
    for parent in list(model.modules()):
        # _modules, not named_children(): the latter lists a shared child only once.
        for child_name, child in list(parent._modules.items()):
            if child is not None and id(child) in replacements:
                setattr(parent, child_name, replacements[id(child)])
    return model


def factorize(
    model: nn.Module,
    factor: int,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    forward_order: str = "auto",
    inplace: bool = False,
    *,
    init: str = "random",
) -> nn.Module:
    """Replace every eligible layer by a composition of ``factor`` linear maps.

    ``init`` says where the factors start:

    - ``"random"`` (default; LoRITa from scratch): fresh factors with the same
      statistics as the plain layer's default init.
    - ``"pretrained"`` (from a trained model): each layer's factors are the balanced
      exact split of its current weight (thin SVD in float64, cast to the layer's
      dtype) and the bias is kept, so the factorized model computes what ``model``
      computes; the sum of squared factor norms is then the smallest possible,
      N * sum(s_i^(2/N)), and weight decay acts from the first step as the
      Schatten-(2/N) penalty. Every other module (BatchNorm statistics included) is
      copied as it is. ``lorita.factorize(model, 3, init="pretrained")``.

    ``factor == 1`` is plain training: the model is returned unchanged (a copy unless
    ``inplace``).
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    check_init(init)
    if not inplace:
        model = copy.deepcopy(model)
    if factor == 1:
        return model
    replacements: dict[int, nn.Module] = {}
    for name in eligible_layers(model, include, exclude):
        module = model.get_submodule(name)
        composed_type = ComposedLinear if isinstance(module, nn.Linear) else ComposedConv2d
        replacements[id(module)] = composed_type.from_dense(
            module, factor, forward_order, init=init
        )
    return _replace(model, replacements)


def composed_layers(model: nn.Module) -> list[str]:
    """Qualified names of the composed (factorized) layers of ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, COMPOSED_TYPES)]


def merge(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Multiply each composed layer's factors into one plain Linear/Conv2d.

    The result has the original module structure and state-dict keys (same device,
    dtype and train/eval mode); every other module, BatchNorm running statistics
    included, is kept as it is.
    """
    if not inplace:
        model = copy.deepcopy(model)
    replacements = {id(m): m.to_dense() for m in model.modules() if isinstance(m, COMPOSED_TYPES)}
    return _replace(model, replacements)
