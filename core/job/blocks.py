"""The Result blocks of a trained and compressed model: its per-layer report, its
rank-search curve with the chosen point's test accuracy, and its RankSearchBlock."""

from __future__ import annotations

from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from core.lowrank import LOWRANK_TYPES, singular_values, weight_matrix
from core.ranks import RankChoice
from core.result import RankSearchBlock


def layers_report(
    merged: nn.Module,
    names: list[str],
    ranks: dict[str, int],
    lowrank: nn.Module,
    spectra: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Per layer: weight shape, full and kept rank, whether it is split, its spectrum."""
    if not spectra or set(spectra) != set(names):
        spectra = singular_values(merged, names)
    split = {name for name, m in lowrank.named_modules() if isinstance(m, LOWRANK_TYPES)}
    report = {}
    for name in names:
        m, n = weight_matrix(merged.get_submodule(name)).shape
        report[name] = {
            "shape": [int(m), int(n)],
            "full_rank": int(min(m, n)),
            "rank": int(ranks[name]),
            "factorized": name in split,
            "singular_values": [float(v) for v in spectra[name]],
        }
    return report


def curve_with_test(choice: RankChoice, chosen_test: float) -> list[dict[str, Any]]:
    """The search curve with test accuracy filled in for the chosen point only."""
    curve = [{**point, "test_accuracy": None} for point in choice.curve]
    for point in curve:
        if (
            abs(point["params_kept"] - choice.params_kept) < 1e-12
            and abs(point["flops_kept"] - choice.flops_kept) < 1e-12
        ):
            point["test_accuracy"] = chosen_test
            break
    else:
        curve.append({**choice.chosen, "test_accuracy": chosen_test})
        curve.sort(key=lambda point: -point["params_kept"])
    return curve


def in_memory_size(model: nn.Module) -> int:
    """Bytes of the model's state dict as a safetensors file, without writing one."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return len(safetensors_bytes(tensors))


def rank_search_block(
    compressed: dict[str, Any], history: list, file_size_bytes: dict[str, int]
) -> RankSearchBlock:
    """The Result block of one trained and compressed model (the LoRITa one or the N=1
    baseline): the same function for both, so their blocks cannot drift apart."""
    return RankSearchBlock(
        accuracy=compressed["accuracy"],
        params=compressed["params"],
        flops=compressed["flops"],
        latency_ms=compressed["latency_ms"],
        file_size_bytes=file_size_bytes,
        curve=compressed["curve"],
        val_accuracy=compressed["val_accuracy"],
        ranks=compressed["ranks"],
        chosen=compressed["chosen"],
        layers=layers_report(
            compressed["merged"],
            compressed["names"],
            compressed["ranks"],
            compressed["lowrank"],
            compressed["choice"].spectra,
        ),
        history=history,
        rank_search=compressed["rank_search"],
        finetune_history=compressed["finetune_history"] or None,
        finetune_lr_scale=compressed.get("finetune_lr_scale"),
        finetune_lr_trials=compressed.get("finetune_lr_trials"),
    )
