"""One rule for "within the allowed accuracy drop", shared by every check that applies it.

Accuracies are shares of a finite split (k / n), so a drop that equals the tolerance
on paper (98.58% - 98.08% = 0.5 point) comes out a few ulps above it in floats. The
rank search, the verdict, the warnings and the int8 check must all call such a gap
"within": otherwise one line of a report says "within 0.50 pts" and the next "more
than the allowed 0.50" for the same two numbers. Torch-free (the API's warnings use it).
"""

from __future__ import annotations

# Far below any accuracy step a split can show (1 / 10^7 samples), far above float noise.
SLACK = 1e-9


def within_drop(drop: float, tolerance: float) -> bool:
    """Whether losing `drop` (a fraction; negative is a gain) stays within `tolerance`."""
    return drop <= tolerance + SLACK
