"""The accuracy search along the budget family, and the curve of fixed allocations.

The search walks the budget family: a geometric grid from "keep everything" down
until accuracy falls out of tolerance, then bisection between the last good and
first bad point. It looks at one fixed validation subset many times, so the chosen
point is confirmed on more samples before it is returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from core.ranks.evaluation import PairedEvaluator
from core.ranks.families import BudgetFamily
from core.ranks.problem import RankChoice, RankProblem

# Geometric grid of kept shares tried before bisection (1.0 is the reference).
GRID_RATIO = 0.6
BISECTION_STEPS = 4
# Passing points re-checked on the verification samples before giving up compression.
MAX_VERIFICATIONS = 4
# Kept shares of the budget family shown as a curve beside a fixed allocation.
CURVE_SHARES = (1.0, 0.5, 0.25, 0.12, 0.06)
# Allocations offered past the chosen one: its kept share times BEYOND_RATIO, squared, ...
BEYOND_RATIO = 0.7
BEYOND_COUNT = 3

ProgressCallback = Callable[[float, str], None]


def search_accuracy(
    problem: RankProblem,
    family: BudgetFamily,
    evaluator: PairedEvaluator,
    progress: ProgressCallback,
) -> RankChoice:
    """Fewest params/FLOPs (along the budget family) within the evaluator's tolerance."""
    reference = evaluator.reference_accuracy()
    points: dict[int, tuple[float, bool]] = {0: (reference, True)}  # removals -> result

    def within(removed: int) -> bool:
        removed = family.canonical(removed)
        if removed not in points:
            points[removed] = evaluator.check(family.ranks_after(removed))
        return points[removed][1]

    # Coarse pass: shrink the kept share geometrically until accuracy leaves tolerance.
    good, bad = 0, None
    share = 1.0
    steps_guess = max(
        1, math.ceil(math.log(max(family.smallest_share, 1e-6)) / math.log(GRID_RATIO))
    )
    while True:
        share *= GRID_RATIO
        removed = family.canonical(family.removals_for(share))
        if removed <= good:
            if family.cost[good] <= family.smallest_share + 1e-12:
                break
            continue
        progress(min(0.7, 0.7 * len(points) / (steps_guess + 1)), f"kept {share:.1%}")
        if within(removed):
            good = removed
            if removed >= family.removable:
                break
        else:
            bad = removed
            break
    # Fine pass: bisection on the removal count between the last good and first bad point.
    if bad is not None:
        for step in range(BISECTION_STEPS):
            middle = family.canonical((good + bad) // 2)
            if middle == good:
                # The halfway point is the same allocation as `good`: try the next one.
                middle = family.canonical(family.removals_for(float(family.cost[good]) - 1e-12))
            if middle in (good, bad):
                break
            progress(0.7 + 0.2 * step / BISECTION_STEPS, "refining")
            if within(middle):
                good = middle
            else:
                bad = middle

    # The search used a fixed validation subset; confirm on more samples and step back to
    # the next less compressed good point if the subset was optimistic.
    passing = sorted((k for k, (_, ok) in points.items() if ok), reverse=True)
    if evaluator.subset_is_full:
        chosen, chosen_accuracy, full_reference = passing[0], points[passing[0]][0], reference
    else:
        full_reference = evaluator.reference_accuracy(full=True)
        chosen, chosen_accuracy = 0, full_reference
        for removed in passing[:MAX_VERIFICATIONS]:
            if removed == 0:
                break
            accuracy, ok = evaluator.check(family.ranks_after(removed), full=True)
            if ok:
                chosen, chosen_accuracy = removed, accuracy
                break
    progress(1.0, "chosen")
    curve = [
        problem.point(family.ranks_after(k), accuracy)
        for k, (accuracy, _) in sorted(points.items())
    ]
    return problem.choice(
        family.ranks_after(chosen),
        chosen_accuracy,
        full_reference,
        curve,
        search={"subset_reference_accuracy": reference},
        verified_samples=evaluator.subset.count
        if evaluator.subset_is_full
        else evaluator.verify_limit,
    )


def allocations_beyond(
    family: BudgetFamily, chosen: dict[str, int], count: int = BEYOND_COUNT
) -> list[dict[str, int]]:
    """Up to `count` allocations of `family` more compressed than `chosen`, at its kept
    share times BEYOND_RATIO, BEYOND_RATIO^2, ...; each differs from the one before."""
    share = family.cost_of(chosen)
    found: list[dict[str, int]] = []
    last = chosen
    while len(found) < count and share > family.smallest_share + 1e-12:
        share *= BEYOND_RATIO
        ranks = family.ranks_at(max(share, family.smallest_share))
        if ranks != last:
            found.append(ranks)
            last = ranks
    return found


def curve_for(
    problem: RankProblem,
    family: BudgetFamily,
    evaluator: PairedEvaluator,
    chosen: dict[str, int],
    progress: ProgressCallback,
) -> tuple[list[dict[str, Any]], float, float]:
    """A few points of the budget family for plots, plus the chosen allocation (full val)."""
    curve = []
    for index, share in enumerate(CURVE_SHARES):
        if share < family.smallest_share:
            break
        progress(0.8 * index / len(CURVE_SHARES), f"kept {share:.0%}")
        ranks = family.ranks_at(share)
        curve.append(problem.point(ranks, evaluator.accuracy(ranks)))
    reference = evaluator.reference_accuracy(full=True)
    accuracy = evaluator.accuracy(chosen, full=True)
    progress(1.0, "chosen")
    return curve, reference, accuracy
