"""Helpers shared by the benchmark scripts: machine description and JSON results."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from core.atomic import write_text_atomic
from core.tolerance import within_drop

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info(device: str) -> dict[str, Any]:
    """What a number was measured on, stored next to every result."""
    info: dict[str, Any] = {
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "load_average_1m": _load_average(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _load_average() -> float | None:
    # Other processes on a shared machine slow everything down; ratios measured
    # side by side stay meaningful, absolute times less so.
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def command_line() -> str:
    """The command that produced a result, as a user would type it."""
    module = Path(sys.argv[0]).stem
    return " ".join(["python -m bench." + module, *sys.argv[1:]])


def write_result(name: str, payload: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``payload`` to results/<name>.json atomically and return the path."""
    folder = results_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=False) + "\n")
    return path


def read_result(name: str, results_dir: Path | None = None) -> dict[str, Any] | None:
    path = (results_dir or RESULTS_DIR) / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def load_runs(path: Path) -> dict[str, Any]:
    """A file of keyed runs, ``{"runs": {key: run}}``; no runs when it does not exist."""
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def store_run(path: Path, key: str, run: dict[str, Any]) -> dict[str, Any]:
    """Add `run` under `key` to the runs file `path` and return the file's content.

    Two processes of one bench (one per core) may finish together: read, add and
    write under an exclusive lock, or one of the two runs is lost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        payload = load_runs(path)
        payload["runs"][key] = run
        write_text_atomic(path, json.dumps(payload, indent=1) + "\n")
    return payload


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def most_compressed_point(
    curve: list[dict[str, Any]], floor: float, accuracy: str, order: tuple[str, ...]
) -> dict[str, Any] | None:
    """The most compressed point of `curve` whose `accuracy` key is at least `floor`, with
    its params and FLOPs drops (1 - the kept share) added; None if no point is. `order`
    names the kept shares compared, the first deciding and the next breaking ties."""
    # The job's own rule, so that a point exactly at the floor passes despite float rounding.
    passing = [p for p in curve if within_drop(floor - p[accuracy], 0.0)]
    if not passing:
        return None
    best = min(passing, key=lambda p: tuple(p[key] for key in order))
    return {
        **best,
        "params_drop": 1.0 - best["params_kept"],
        "flops_drop": 1.0 - best["flops_kept"],
    }


def float_list(text: str) -> list[float]:
    """A comma-separated list of numbers on the command line ("0.85,0.7")."""
    return [float(value) for value in text.split(",")]


def add_device_options(parser) -> None:
    """--device, --data-dir and --results-dir, as every script that trains takes them."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--results-dir", type=Path, help="default bench/results")
