"""The CLI's lines about a job that started from the user's model (--weights)."""

from __future__ import annotations

from core.recipes import epochs_text
from core.result import Result


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def pretrained_lines(result: Result) -> list[str]:
    """Your model as uploaded, its truncation at the same budget, and LoRITa's."""
    lines = []
    if result.recipe is not None:
        recipe = result.recipe
        tuned = ""
        if recipe.finetune_epochs:
            how = f"distilled from {recipe.distilled_from}" if recipe.distilled_from else "labels"
            tuned = f"; fine-tuning {epochs_text(recipe.finetune_epochs)}, {how}"
        lines.append(
            f"recipe: {recipe.name} ({epochs_text(recipe.epochs)}, {recipe.optimizer}, lr "
            f"{recipe.lr:g}, weight decay {recipe.weight_decay:g}{tuned})"
        )
    reference = result.pretrained
    if reference is None:
        return ["", *lines] if lines else []
    plain = reference.plain_truncation
    kept = 1 - result.params.compressed / reference.params
    data_aware = result.spec["compress"].get("truncation") == "data-aware"
    how = "data-aware truncation" if data_aware else "plain SVD truncation "
    lines += [
        f"from your model (accuracy {_pct(reference.accuracy)}, {reference.params:,} parameters):",
        f"  {how}  {_pct(plain.accuracy)} at {plain.params:,} parameters "
        f"({1 - plain.params_kept:.1%} fewer)",
        f"  LoRITa warm start     {_pct(result.accuracy.compressed)} at "
        f"{result.params.compressed:,} parameters ({kept:.1%} fewer)",
    ]
    return ["", *lines]
