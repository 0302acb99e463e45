"""How `lorita compress` shows a job's progress events on stderr."""

from __future__ import annotations

import sys
from typing import Any


class ProgressView:
    """Progress on stderr: a tqdm bar over the whole job (0-100%) on a terminal, plain
    lines otherwise; one line per epoch and per stage change either way."""

    def __init__(self, quiet: bool) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.write = tqdm.write
        self.last_stage = self.last_message = None
        self.bar = None
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(
                total=100, file=sys.stderr, unit="%", bar_format="{l_bar}{bar}| {elapsed}{postfix}"
            )

    def _line(self, text: str) -> None:
        self.write(text, file=sys.stderr)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = event.get("type")
        if kind == "epoch":
            self._line(
                f"{event['run']} epoch {event['epoch']}/{event['epochs']}: "
                f"train loss {event['train_loss']:.4f} acc {event['train_acc']:.4f}, "
                f"val loss {event['val_loss']:.4f} acc {event['val_acc']:.4f}, "
                f"lr {event['lr']:.2e}, {event['epoch_time_s']:.1f}s"
            )
        elif kind == "stage" and self.bar is None:
            stage = event["stage"]
            # Rank search messages change per candidate: one line per stage is enough.
            if stage != self.last_stage or (
                stage in ("train", "baseline") and event["message"] != self.last_message
            ):
                self._line(f"[{100 * event['progress']:3.0f}%] {stage}: {event['message']}")
        if kind == "stage":
            self.last_stage, self.last_message = event["stage"], event["message"]
        if self.bar is None:
            return
        if "progress" in event:
            self.bar.n = round(100 * event["progress"], 1)
        if kind == "stage":
            self.bar.set_description_str(event["stage"], refresh=False)
            self.bar.set_postfix_str(event["message"][:60], refresh=False)
        elif kind == "batch":
            self.bar.set_description_str(f"{event['run']} epoch {event['epoch']}", refresh=False)
            self.bar.set_postfix_str(f"batch {event['batch']}/{event['batches']}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
