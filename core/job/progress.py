"""The job's progress bar: the share each phase gets, and stage events that never go back."""

from __future__ import annotations

from typing import Any

from core.events import EventSink

# Share of the job's progress bar each phase gets (training dominates the time).
TRAIN_END = 0.75
RANKS_END = 0.85
FINETUNE_END = 0.92
COMPARE_END = 0.97


class Progress:
    """Stage events with a progress value that never goes backwards."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.value = 0.0

    def stage(self, stage: str, message: str, progress: float) -> None:
        self.value = max(self.value, min(1.0, progress))
        self.sink({"type": "stage", "stage": stage, "message": message, "progress": self.value})

    def forward(self, event: dict[str, Any]) -> None:
        if "progress" in event:
            self.value = max(self.value, event["progress"])
            event = {**event, "progress": self.value}
        self.sink(event)
