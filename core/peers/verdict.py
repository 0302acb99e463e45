"""The verdict of a job's comparisons: which small model is best at the tolerance."""

from __future__ import annotations

from typing import Any

from core.method_names import method_name
from core.result import Verdict, VerdictEntry
from core.tolerance import within_drop

# Sizes within this relative distance count as "the same size" in the verdict (a
# truncation or a pruning step cannot hit a share exactly).
EQUAL_SIZE = 0.05


def decide(
    entries: list[dict[str, Any]], reference_accuracy: float, tolerance: float, target: str
) -> Verdict:
    """The best method at the tolerance: the smallest model whose test accuracy is within
    `tolerance` of the plain N=1 model's (the most accurate among equal sizes); when none
    is, the most accurate one. An entry's optional `finetune_epochs` puts "+ fine-tune"
    in its name in the sentence."""
    names = {
        e["method"]: method_name(e["method"], e.get("finetune_epochs", 0), epochs_shown=False)
        for e in entries
    }
    standings = [
        VerdictEntry(
            method=e["method"],
            accuracy=e["accuracy"],
            kept=e["kept"],
            within_tolerance=within_drop(reference_accuracy - e["accuracy"], tolerance),
        )
        for e in entries
    ]
    within = [s for s in standings if s.within_tolerance]
    if within:
        smallest = min(s.kept for s in within)
        same_size = [s for s in within if s.kept <= smallest * (1 + EQUAL_SIZE)]
        best = max(same_size, key=lambda s: (s.accuracy, -s.kept))
        criterion = "smallest_within_tolerance"
    else:
        best = max(standings, key=lambda s: (s.accuracy, -s.kept))
        criterion = "most_accurate"
    return Verdict(
        best=best.method,
        criterion=criterion,
        target=target,
        tolerance=tolerance,
        reference_accuracy=reference_accuracy,
        standings=standings,
        sentence=_sentence(
            best, standings, criterion, reference_accuracy, tolerance, target, names
        ),
    )


def _sentence(best, standings, criterion, reference, tolerance, target, names) -> str:
    what = "params" if target == "params" else "FLOPs"

    def told(s: VerdictEntry) -> str:
        return f"{names[s.method]} {100 * s.accuracy:.2f}% at {100 * s.kept:.1f}%"

    others = "; ".join(told(s) for s in standings if s is not best)
    if criterion == "smallest_within_tolerance":
        head = (
            f"{names[best.method]} is best: {100 * best.accuracy:.2f}% test "
            f"accuracy at {100 * best.kept:.1f}% of the {what}, within "
            f"{100 * tolerance:.2f} pts of the plain N=1 model ({100 * reference:.2f}%)"
        )
    else:
        head = (
            f"no method stays within {100 * tolerance:.2f} pts of the plain N=1 model "
            f"({100 * reference:.2f}%); the most accurate is "
            f"{names[best.method]}: {100 * best.accuracy:.2f}% at "
            f"{100 * best.kept:.1f}% of the {what}"
        )
    return f"{head}. Others: {others}." if others else f"{head}."
