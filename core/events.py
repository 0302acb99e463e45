"""Progress events the engine emits while it works.

An event is a plain JSON-ready dict with a "type" key, so the worker can store
it and the API can stream it without translation:

- {"type": "stage", "stage": "train"|"baseline"|"rank_search"|"finetune"|"export"|"done",
   "message": str, "progress": float}
- {"type": "epoch", "run": "lorita"|"baseline"|"finetune", "epoch": int, "epochs": int,
   "train_loss": float, "train_acc": float, "val_loss": float, "val_acc": float,
   "lr": float, "epoch_time_s": float, "progress": float}
- {"type": "batch", "run": ..., "epoch": int, "batch": int, "batches": int, "progress": float}
- {"type": "result", "result": dict}

"progress" is the fraction of the whole job done, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
EventSink = Callable[[Event], None]
StopCheck = Callable[[], bool]


def ignore_event(event: Event) -> None:
    """Default sink: drop the event."""


def never_stop() -> bool:
    """Default stop check: keep going."""
    return False
