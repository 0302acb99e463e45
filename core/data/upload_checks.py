"""Checks both upload readers (.npz and zip of image folders) apply."""

from __future__ import annotations

import numpy as np

from core.errors import DataError

MIN_IMAGE_SIZE = 4
MAX_IMAGE_SIZE = 1024


def check_label_coverage(label: str, y_train: np.ndarray, num_classes: int) -> None:
    """Labels are 0..K-1 with every class in the training set; anything else (labels
    5..14 for 10 classes, a gap) would train output units that can never be right."""
    counts = np.bincount(y_train, minlength=num_classes)
    absent = np.flatnonzero(counts == 0)
    if len(absent):
        shown = ", ".join(str(int(c)) for c in absent[:8]) + (", ..." if len(absent) > 8 else "")
        used = np.flatnonzero(counts)
        raise DataError(
            f"{label}: labels must be 0..K-1 with every class in y_train, but y_train has no "
            f"example of class {shown} (it uses {len(used)} labels from {int(used.min())} to "
            f"{int(used.max())}, so K would be {num_classes}); relabel them 0..{len(used) - 1}, "
            "e.g. y = numpy.unique(y, return_inverse=True)[1] over train and test together"
        )
