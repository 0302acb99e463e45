"""A finished job's server-sent event stream, read back: its events, and what they say
happened (the states, and the epochs each attempt trained).

Standard library only: check_jobs.py runs on the host beside podman, with the
system's python3; the stack test reads its own stack's events with it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field


def parse_events(lines: Iterable[str]) -> list[tuple[str, dict]]:
    """(event name, data) of each event in the stream's lines, up to the closing "end"."""
    events, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: ") and kind:
            events.append((kind, json.loads(line[len("data: ") :])))
            if kind == "end":
                break
    return events


@dataclass
class Timeline:
    """What a job's events say happened: its states, and the epochs each attempt trained."""

    states: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    epochs: dict[int, list[int]] = field(default_factory=dict)  # attempt -> epochs
    reasons: list[str] = field(default_factory=list)


def timeline(events: Iterable[tuple[str, dict]]) -> Timeline:
    result, attempt = Timeline(), 0
    for kind, data in events:
        if kind == "state":
            result.states.append(data["status"])
            if data["status"] == "running":
                attempt = data["attempt"]
                result.workers.append(data["worker"])
                result.epochs[attempt] = []
            if data.get("reason"):
                result.reasons.append(data["reason"])
        elif kind == "epoch" and data.get("run", "lorita") == "lorita":
            # LoRITa's own training only, not the epochs of a baseline or fine-tune run.
            result.epochs[attempt].append(data["epoch"])
    return result
