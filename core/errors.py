"""Errors a person can act on.

Every failure the engine expects carries a message that says what went wrong
and what to change; the worker stores `str(error)` as the job's failure reason.
"""


class LoritaError(Exception):
    """Base class: the message is shown to the user as is."""

    kind = "error"


class SpecError(LoritaError, ValueError):
    """The job spec cannot be run as written (a field to change)."""

    kind = "spec"


class DataError(LoritaError, ValueError):
    """The dataset is missing, malformed or does not fit the model."""

    kind = "data"


class TrainingDiverged(LoritaError):
    """The loss became NaN/inf; usually the learning rate is too high."""

    kind = "diverged"


class OutOfMemory(LoritaError):
    """The device ran out of memory; usually the batch size is too large."""

    kind = "out_of_memory"


class Cancelled(LoritaError):
    """The caller asked to stop; raised at the next batch boundary."""

    kind = "cancelled"
