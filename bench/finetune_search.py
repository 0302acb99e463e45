"""The job's rank choice with and without the search after fine-tuning, on a trained model.

From one trained run (a `lorita compress` output folder whose model.safetensors is the
uncompressed model: `--strategy uniform --keep-fraction 1.0`), the job's own compress
stage (core.job.stages.JobStages.compress, the code a job runs after training) is run
at each tolerance twice, the same but for compress.finetune_search:

- search, then fine-tune:   the search keeps the most compressed allocation within the
                            tolerance straight after truncation; that one is fine-tuned;
- search after fine-tuning: the job walks on to smaller allocations, fine-tuning and
                            checking each on the validation split (core.job.finetune_search).

Both fine-tune by distillation from the model before truncation for --finetune-epochs.
Reported: FLOPs and params kept, validation and test accuracy, the fine-tunings paid and
the wall time of the stage.

    python -m bench.finetune_search --setting resnet20-fashion --run RUN_N3
    python -m bench.finetune_search --setting resnet20-fashion --table

Results: bench/results/finetune_search_<setting>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    add_device_options,
    command_line,
    float_list,
    machine_info,
    read_result,
    write_result,
)
from bench.peers import load_splits, read_run
from core.events import never_stop
from core.job.progress import Progress
from core.job.stages import JobStages

MODES = {False: "search, then fine-tune", True: "search after fine-tuning"}


def _stage(spec, splits, device: str, tolerance: float, searched: bool, epochs: int):
    compress = spec.compress.model_copy(
        update={
            "strategy": "accuracy",
            "max_accuracy_drop": tolerance,
            "target": "flops",
            "finetune_epochs": epochs,
            "finetune_search": searched,
            "distill": True,
        }
    )
    spec = spec.model_copy(update={"compress": compress})
    return JobStages(spec, splits, device, Progress(lambda _event: None), never_stop, None)


def _finetunings(tried: list[dict[str, Any]]) -> int:
    """Fine-tunings a stage paid: one per allocation tried, plus the search's own choice
    when none of them passed (a stage without the walk fine-tunes once)."""
    return len(tried) + (0 if any(point["within_tolerance"] for point in tried) else 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec, model = read_run(args.run)
    splits = load_splits(spec, args.data_dir)
    rows = []
    for tolerance in args.tolerances:
        for searched in (False, True):
            stage = _stage(spec, splits, args.device, tolerance, searched, args.finetune_epochs)
            started = time.monotonic()
            block = stage.compress(model.to(args.device), "lorita", (0.0, 1.0))
            wall = time.monotonic() - started
            tried = block["rank_search"].get("after_finetune") or []
            row = {
                "tolerance": tolerance,
                "finetune_search": searched,
                "method": MODES[searched],
                "flops_kept": block["flops"]["compressed"] / block["flops"]["uncompressed"],
                "params_kept": block["params"]["compressed"] / block["params"]["uncompressed"],
                "val_accuracy": block["val_accuracy"],
                "test_accuracy": block["accuracy"],
                "finetunings": _finetunings(tried),
                "tried": tried,
                "wall_s": wall,
            }
            rows.append(row)
            print(
                f"tolerance {tolerance:g}, {row['method']}: FLOPs kept {row['flops_kept']:.3f}, "
                f"test {row['test_accuracy']['compressed']:.4f} "
                f"(uncompressed {row['test_accuracy']['uncompressed']:.4f}), {wall:.0f}s",
                file=sys.stderr,
            )
    return {
        "setting": args.setting,
        "arch": spec.model.arch,
        "dataset": spec.data.dataset,
        "factor": spec.lorita.factor,
        "epochs": spec.train.epochs,
        "train_subset": spec.data.train_subset,
        "finetune_epochs": args.finetune_epochs,
        "run": args.run.name,
        "rows": rows,
        "machine": machine_info(args.device),
        "command": command_line(),
    }


def _pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def table(payload: dict[str, Any]) -> str:
    subset = payload.get("train_subset")
    lines = [
        f"{payload['arch']} N={payload['factor']} on {payload['dataset']}"
        f"{f' ({subset:,} training images)' if subset else ''}, {payload['epochs']} epochs; "
        f"fine-tuning {payload['finetune_epochs']} epoch(s) per allocation, distilled",
        "",
        "| tolerance | method | FLOPs drop | params drop | val acc (uncompressed) "
        "| test acc (uncompressed) | fine-tunings | stage wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        val, test = row["val_accuracy"], row["test_accuracy"]
        lines.append(
            f"| {100 * row['tolerance']:g} pt | {row['method']} | {_pct(1 - row['flops_kept'])} "
            f"| {_pct(1 - row['params_kept'])} | {_pct(val['compressed'], 2)} "
            f"({_pct(val['uncompressed'], 2)}) | {_pct(test['compressed'], 2)} "
            f"({_pct(test['uncompressed'], 2)}) | {row['finetunings']} | {row['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", required=True, help="name of the result file")
    p.add_argument("--run", type=Path, help="folder of the trained run")
    p.add_argument("--table", action="store_true", help="print the table of the saved result")
    p.add_argument(
        "--tolerances",
        type=float_list,
        default=[0.005, 0.01],
        help="max_accuracy_drop values, fractions (comma-separated)",
    )
    p.add_argument("--finetune-epochs", type=int, default=1)
    add_device_options(p)
    args = p.parse_args(argv)
    if not args.table and args.run is None:
        p.error("give --run (a trained run folder) or --table")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"finetune_search_{args.setting}"
    if args.table:
        payload = read_result(name, args.results_dir)
        if payload is None:
            raise SystemExit(f"no {name}.json in the results folder: run the benchmark first")
        print(table(payload))
        return 0
    payload = run(args)
    path = write_result(name, payload, args.results_dir)
    print(table(payload))
    print(f"\nwritten to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
