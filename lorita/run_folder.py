"""The output folder of `lorita compress`: its default name, and what a rerun may do.

A run folder holds `run.json` (the spec as asked for on the command line), the
artifacts, and while training the checkpoints. Before a run starts, the folder's
state decides what happens:
- empty or new: the run starts;
- the same spec, finished (report.json is there): nothing is trained again; the
  caller shows the stored result and says where it is;
- the same spec, unfinished: the run resumes from its checkpoints, and says so;
- another spec, or files that are not a run: refused, unless --force, which
  removes what an earlier run wrote (and nothing else) and starts over.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.catalog import is_file_reference
from core.errors import LoritaError

RUN_FILE = "run.json"
REPORT_FILE = "report.json"
CHECKPOINT_FOLDER = "checkpoints"
# The checkpoint of each training run of a job (core.pipeline names them by run).
CHECKPOINT_FILES = ("lorita.pt", "baseline.pt")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RunFolderError(LoritaError):
    """The output folder holds something a run must not silently overwrite."""

    kind = "spec"


def safe_name(text: str) -> str:
    """`text` as one folder name: no separators, nothing a shell would trip over."""
    return _UNSAFE.sub("-", text).strip("-.") or "run"


def default_out_dir(arch: str, dataset: str, factor: int) -> Path:
    """runs/ARCH-DATASET-nN; a dataset file contributes its stem (runs/fcn-mine-n3)."""
    data = Path(dataset).stem if is_file_reference(dataset) else dataset
    return Path("runs") / f"{safe_name(arch)}-{safe_name(data)}-n{factor}"


@dataclass(frozen=True)
class FolderPlan:
    """What to do with the folder: "start", "resume" or "finished", and what to say."""

    action: str
    message: str | None = None


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted(set(old) | set(new)):
            found += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if old == new else [f"{path} {json.dumps(old)} -> {json.dumps(new)}"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _checkpoints(checkpoint_dir: Path | None) -> list[Path]:
    if checkpoint_dir is None:
        return []
    return [checkpoint_dir / name for name in CHECKPOINT_FILES if (checkpoint_dir / name).is_file()]


def _checkpoint_epoch(path: Path) -> str | None:
    """ "epoch 3/8" of a training checkpoint, or None when it cannot be read."""
    try:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        history = state.get("history") or []
        epochs = history[-1].get("epochs") if history else None
        return f"epoch {state['epoch']}/{epochs}" if epochs else f"epoch {state['epoch']}"
    except Exception:  # noqa: BLE001 - only for the message; the trainer checks it properly
        return None


def plan_run(
    out_dir: Path,
    checkpoint_dir: Path | None,
    requested: dict[str, Any],
    *,
    force: bool,
    flag_terms=lambda text: text,
) -> FolderPlan:
    """Decide what a run into `out_dir` does; raises RunFolderError when it must not run.

    `requested` is the spec as asked for (before defaults); `flag_terms` rewrites spec
    paths in a message into the caller's own terms (the CLI's flags)."""
    entries = [p for p in out_dir.iterdir()] if out_dir.is_dir() else []
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"--out {out_dir} is a file, not a folder")
    if not entries:
        return FolderPlan("start")
    earlier = _read_json(out_dir / RUN_FILE)
    earlier_spec = earlier.get("spec") if isinstance(earlier, dict) else None
    if force:
        clear_run(out_dir, checkpoint_dir)
        return FolderPlan("start", f"--force: removed the earlier run's files in {out_dir}")
    if earlier_spec is None:
        raise RunFolderError(
            f"{out_dir} is not empty and holds no lorita run ({RUN_FILE} is missing); choose "
            "another --out, or use --force to write into it (only lorita's own files are "
            "replaced)"
        )
    changed = _differences(earlier_spec, requested)
    if changed:
        raise RunFolderError(
            f"{out_dir} holds a run with other settings ({flag_terms('; '.join(changed))}); "
            "choose another --out, or use --force to overwrite it"
        )
    if (out_dir / REPORT_FILE).is_file():
        return FolderPlan(
            "finished",
            f"this run already finished in {out_dir} (its result is {out_dir / REPORT_FILE}); "
            "showing it. Use --force to train it again",
        )
    checkpoints = _checkpoints(checkpoint_dir)
    if not checkpoints:
        return FolderPlan(
            "resume", f"restarting the unfinished run in {out_dir} (it left no checkpoint)"
        )
    reached = ", ".join(
        f"{path.stem} {epoch}" for path in checkpoints if (epoch := _checkpoint_epoch(path))
    )
    return FolderPlan(
        "resume",
        f"resuming the unfinished run in {out_dir} from its checkpoints"
        + (f" ({reached})" if reached else ""),
    )


def record_run(out_dir: Path, requested: dict[str, Any]) -> None:
    """Write run.json: what a later rerun into this folder is compared with."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_FILE).write_text(json.dumps({"spec": requested}, indent=2) + "\n")


def clear_run(out_dir: Path, checkpoint_dir: Path | None) -> None:
    """Remove what a lorita run wrote into `out_dir` (and its checkpoints), nothing else."""
    from core.export import ARTIFACTS

    report = _read_json(out_dir / REPORT_FILE)
    listed = report.get("artifacts", []) if isinstance(report, dict) else []
    for name in {*ARTIFACTS, *listed, RUN_FILE, REPORT_FILE}:
        path = out_dir / Path(str(name)).name  # names only: never outside the folder
        if path.is_file():
            path.unlink()
    remove_checkpoints(out_dir, checkpoint_dir)


def remove_checkpoints(out_dir: Path, checkpoint_dir: Path | None) -> None:
    """Delete the run's checkpoints; the folder too when it is the default one or empty."""
    if checkpoint_dir is None:
        return
    for path in _checkpoints(checkpoint_dir):
        path.unlink()
    if checkpoint_dir == out_dir / CHECKPOINT_FOLDER:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    elif checkpoint_dir.is_dir() and not any(checkpoint_dir.iterdir()):
        checkpoint_dir.rmdir()
