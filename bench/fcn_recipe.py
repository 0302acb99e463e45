"""Which default recipe the FCN family gets: a grid of recipes on MNIST, 8 epochs.

Each setting is one `lorita compress` job (the product's own pipeline, default
strategy `accuracy` at half a point, ranks chosen on the validation split) on the
full MNIST training set; the table reads test accuracy before and after
compression and the share of the parameters kept. N=1 rows are the reference a
user compares with ("within 0.3 points of plain training").

    python -m bench.fcn_recipe                 # every setting (about 5 min each on one core)
    python -m bench.fcn_recipe --only n3-adamw-lr2-ft3 --seeds 0 1 2
    python -m bench.fcn_recipe --table         # the table of bench/results/fcn_recipe.json

Results are merged into bench/results/fcn_recipe.json, keyed by setting and seed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).parent / "results" / "fcn_recipe.json"
EPOCHS = 8
# The first runs did not record their CPU model.
EARLIER_CPU = "x86-64 (not recorded)"
# Nor, until 2026-12-02, the day they ran on.
EARLIER_DAY = "earlier"


def _adamw(lr: float = 1e-3, weight_decay: float = 0.05, **extra) -> dict:
    # Every setting names its label smoothing (the FCN family's is 0, the other
    # families' 0.1), so a setting keeps meaning what its rows were measured with.
    return {
        "optimizer": "adamw",
        "lr": lr,
        "weight_decay": weight_decay,
        "schedule": "onecycle",
        "label_smoothing": 0.0,
        **extra,
    }


def _sgd(lr: float, weight_decay: float) -> dict:
    # With SGD the weight decay is the L2 penalty of the theory exactly (AdamW's
    # decoupled decay is not a gradient of it).
    return {
        "optimizer": "sgd",
        "lr": lr,
        "momentum": 0.9,
        "weight_decay": weight_decay,
        "schedule": "onecycle",
        "label_smoothing": 0.0,
    }


def _ft(epochs: int) -> dict:
    return {"finetune_epochs": epochs}


def _budget(share: float, epochs: int) -> dict:
    return {"strategy": "budget", "budget": share, "finetune_epochs": epochs}


# name -> (factor, train fields, compress fields)
SETTINGS: dict[str, tuple[int, dict, dict]] = {
    "n3-adam-l2-cosine": (
        3,
        {
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "schedule": "cosine",
            "label_smoothing": 0.0,
        },
        _ft(0),
    ),
    "n3-adamw-onecycle": (3, _adamw(), _ft(0)),
    "n3-adamw-onecycle-ft2": (3, _adamw(), _ft(2)),
    "n3-adamw-wd0.1-lr2-ft2": (3, _adamw(lr=2e-3, weight_decay=0.1), _ft(2)),
    "n3-adamw-bs64-ft2": (3, _adamw(batch_size=64), _ft(2)),
    "n3-adamw-lr2-ft3": (3, _adamw(lr=2e-3), _ft(3)),
    # The same decay per step (lr x weight decay) as the default at half the step size,
    # and twice that decay.
    "n3-adamw-lr1-wd0.1-ft3": (3, _adamw(lr=1e-3, weight_decay=0.1), _ft(3)),
    "n3-adamw-lr1-wd0.2-ft3": (3, _adamw(lr=1e-3, weight_decay=0.2), _ft(3)),
    # The default recipe trained longer: what closing the gap to N=1 would take.
    "n3-adamw-lr2-ft3-12ep": (3, _adamw(lr=2e-3, epochs=12), _ft(3)),
    # Label smoothing (0 in the FCN family's recipe), with its N=1 reference.
    "n3-adamw-lr2-ls0.1-ft3": (3, _adamw(lr=2e-3, label_smoothing=0.1), _ft(3)),
    "n1-adamw-lr2-ls0.1": (1, _adamw(lr=2e-3, label_smoothing=0.1), _ft(0)),
    # Both at one size, 6% of the parameters (strategy budget), to compare at equal size.
    "n3-adamw-lr2-ft3-b6": (3, _adamw(lr=2e-3), _budget(0.06, 3)),
    "n3-adamw-lr2-ls0.1-ft3-b6": (3, _adamw(lr=2e-3, label_smoothing=0.1), _budget(0.06, 3)),
    # Smoothing with the low rank pushed harder (twice the decay), or half the smoothing:
    # does the smoothed model's accuracy survive the cut to 6%?
    "n3-adamw-lr2-ls0.1-wd0.1-ft3-b6": (
        3,
        _adamw(lr=2e-3, weight_decay=0.1, label_smoothing=0.1),
        _budget(0.06, 3),
    ),
    "n3-adamw-lr2-ls0.05-ft3-b6": (3, _adamw(lr=2e-3, label_smoothing=0.05), _budget(0.06, 3)),
    "n3-sgd-lr0.05-wd5e-4-ft3": (3, _sgd(0.05, 5e-4), _ft(3)),
    "n3-sgd-lr0.05-wd2e-3-ft3": (3, _sgd(0.05, 2e-3), _ft(3)),
    "n3-sgd-lr0.05-wd4e-3-ft3": (3, _sgd(0.05, 4e-3), _ft(3)),
    "n3-sgd-lr0.05-wd2e-3-ft3-b6": (3, _sgd(0.05, 2e-3), _budget(0.06, 3)),
    "n3-sgd-lr0.05-wd1e-3-ft3-b6": (3, _sgd(0.05, 1e-3), _budget(0.06, 3)),
    "n1-sgd-lr0.05-wd2e-3": (1, _sgd(0.05, 2e-3), _ft(0)),
    "n1-sgd-lr0.05-wd5e-4": (1, _sgd(0.05, 5e-4), _ft(0)),
    "n1-adamw-onecycle": (1, _adamw(), _ft(0)),
    "n1-adamw-lr2": (1, _adamw(lr=2e-3), _ft(0)),
}


def run_key(name: str, seed: int, processor: str, day: str, machine: str = "") -> str:
    # The same seed gives different models on different CPUs (float summation order):
    # runs from different machines are kept side by side, not overwritten. Machines
    # with the same model name differ too, so a run also keys by the day it ran on and,
    # since two machines ran on one day, by the machine (rows stored before that are
    # keyed without it, the earliest without the day).
    key = f"{name}/s{seed}/{processor}/{day}"
    return f"{key}/{machine}" if machine else key


def machine_tag() -> str:
    """A short name for this machine as booted: the first hex digits of the kernel's
    boot id (a random number drawn at every boot, so it says nothing else about the
    machine). Empty where the system has none."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
    return "boot " + boot_id.replace("-", "")[:6]


def run_setting(name: str, seed: int, work: Path) -> dict:
    from bench.common import machine_info
    from core.pipeline import run_job
    from core.spec import JobSpec

    factor, train, compress = SETTINGS[name]
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "fcn"},
            "data": {"dataset": "mnist"},
            "lorita": {"factor": factor},
            "train": {"epochs": EPOCHS, "seed": seed, **train},
            "compress": compress,
        }
    )
    started = time.monotonic()
    result = run_job(spec, work / f"{name}-s{seed}", device="cpu")
    return {
        "setting": name,
        "seed": seed,
        "processor": machine_info("cpu")["processor"],
        "day": time.strftime("%Y-%m-%d"),
        "machine": machine_tag(),
        "factor": factor,
        "train": train,
        "compress": compress,
        "accuracy": result.accuracy.model_dump(),
        "params": result.params.model_dump(),
        "ranks": result.ranks,
        "train_loss": [epoch.train_loss for epoch in result.history],
        "wall_s": time.monotonic() - started,
    }


def loss_rise(run: dict) -> str:
    """The largest rise of the training loss from one epoch to the next: a spike shows
    as a rise, a healthy run has none ("-"); blank for runs that did not record it."""
    losses = run.get("train_loss")
    if not losses:
        return ""
    rise = max((b - a for a, b in zip(losses, losses[1:], strict=False)), default=0.0)
    return f"+{rise:.3f}" if rise > 0 else "-"


def _store(run: dict) -> dict:
    """Add `run` to the results file (two settings may run at a time, one per core)."""
    from bench.common import store_run

    key = run_key(run["setting"], run["seed"], run["processor"], run["day"], run.get("machine", ""))
    return store_run(RESULTS, key, run)


def table(payload: dict) -> str:
    rows = [
        "| setting | N | seed | CPU | day | train loss rise | test acc | compressed test acc "
        "| params kept | ranks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def order(run: dict) -> tuple:
        return (
            run["setting"],
            run["seed"],
            run.get("processor", ""),
            run.get("day", ""),
            run.get("machine", ""),
        )

    def day(run: dict) -> str:
        machine = run.get("machine")
        return f"{run.get('day', EARLIER_DAY)}" + (f" ({machine})" if machine else "")

    for run in sorted(payload["runs"].values(), key=order):
        params = run["params"]
        rows.append(
            f"| {run['setting']} | {run['factor']} | {run['seed']} "
            f"| {run.get('processor', EARLIER_CPU)} | {day(run)} "
            f"| {loss_rise(run)} "
            f"| {100 * run['accuracy']['uncompressed']:.2f} "
            f"| {100 * run['accuracy']['compressed']:.2f} "
            f"| {100 * params['compressed'] / params['uncompressed']:.1f}% "
            f"| {', '.join(str(r) for r in run['ranks'].values())} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SETTINGS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/lorita-fcn-recipe"))
    parser.add_argument("--table", action="store_true", help="print the stored table only")
    args = parser.parse_args()
    from bench.common import load_runs

    payload = load_runs(RESULTS)
    if not args.table:
        for name in args.only or sorted(SETTINGS):
            for seed in args.seeds:
                run = run_setting(name, seed, args.work_dir)
                payload = _store(run)
    print(table(payload))


if __name__ == "__main__":
    main()
