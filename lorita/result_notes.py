"""The lines under `lorita compress`'s table that say how far to trust it: the
plain N=1 baseline next to the compressed model, and the result's warnings."""

from __future__ import annotations

from collections.abc import Callable

from core.method_names import PLAIN_FROM_YOURS
from core.result import Result


def relative_change(before: float, after: float) -> str:
    """`after` against `before` in percent, signed ("-89.4%")."""
    return f"{100 * (after - before) / before:+.1f}%" if before else "n/a"


def baseline_lines(result: Result) -> list[str]:
    """The N=1 model's accuracy, and what the compressed LoRITa model costs against it."""
    base = result.baseline
    if base is None:
        return []
    gap = result.accuracy.compressed - base.accuracy.uncompressed
    return [
        f"baseline (plain N=1 model{PLAIN_FROM_YOURS if result.pretrained else ''}): "
        f"test accuracy {100 * base.accuracy.uncompressed:.2f}%, "
        f"{base.params.uncompressed:,} parameters",
        f"  LoRITa compressed against it: {100 * gap:+.2f} pts test accuracy, "
        f"{relative_change(base.params.uncompressed, result.params.compressed)} parameters, "
        f"{relative_change(base.flops.uncompressed, result.flops.compressed)} FLOPs",
        f"  the N=1 model compressed the same way: {100 * base.accuracy.compressed:.2f}%, "
        f"{base.params.compressed:,} parameters "
        f"({relative_change(base.params.uncompressed, base.params.compressed)})",
    ]


def finetune_search_lines(result: Result) -> list[str]:
    """What the search after fine-tuning tried (compress.finetune_search): one line per
    allocation, then which one the job kept."""
    search = result.rank_search
    tried = search.after_finetune if search else None
    if not tried:
        return []
    start = search.before_finetune
    lines = [
        "searched after fine-tuning"
        + (
            f" (the search alone kept {start.params_kept:.1%} params / "
            f"{start.flops_kept:.1%} FLOPs):"
            if start is not None
            else ":"
        )
    ]
    for point in tried:
        lines.append(
            f"  {point.params_kept:.1%} params / {point.flops_kept:.1%} FLOPs kept: val "
            f"{100 * point.val_accuracy_before_finetune:.2f}% truncated, "
            f"{100 * point.val_accuracy:.2f}% fine-tuned "
            + ("(within the tolerance)" if point.within_tolerance else "(outside the tolerance)")
        )
    lines.append(
        "  kept the most compressed within the tolerance"
        if any(point.within_tolerance for point in tried)
        else "  none within the tolerance: kept the search's own choice, fine-tuned"
    )
    return lines


def warning_lines(result: Result, terms: Callable[[str], str] = lambda text: text) -> list[str]:
    """One block per warning: "WARNING (kind): message" and "  what to do: advice"."""
    lines = []
    for warning in result.warnings or []:
        lines.append(f"WARNING ({warning.kind}): {terms(warning.message)}")
        lines.append(f"  what to do: {terms(warning.advice)}")
    return lines
