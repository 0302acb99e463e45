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
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).parent / "results" / "fcn_recipe.json"
EPOCHS = 8


def _adamw(lr: float = 1e-3, weight_decay: float = 0.05, **extra) -> dict:
    return {
        "optimizer": "adamw",
        "lr": lr,
        "weight_decay": weight_decay,
        "schedule": "onecycle",
        **extra,
    }


def _ft(epochs: int) -> dict:
    return {"finetune_epochs": epochs}


# name -> (factor, train fields, compress fields)
SETTINGS: dict[str, tuple[int, dict, dict]] = {
    "n3-adam-l2-cosine": (
        3,
        {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine"},
        _ft(0),
    ),
    "n3-adamw-onecycle": (3, _adamw(), _ft(0)),
    "n3-adamw-onecycle-ft2": (3, _adamw(), _ft(2)),
    "n3-adamw-wd0.1-lr2-ft2": (3, _adamw(lr=2e-3, weight_decay=0.1), _ft(2)),
    "n3-adamw-bs64-ft2": (3, _adamw(batch_size=64), _ft(2)),
    "n3-adamw-lr2-ft3": (3, _adamw(lr=2e-3), _ft(3)),
    "n1-adamw-onecycle": (1, _adamw(), _ft(0)),
    "n1-adamw-lr2": (1, _adamw(lr=2e-3), _ft(0)),
}


def run_setting(name: str, seed: int, work: Path) -> dict:
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
        "factor": factor,
        "train": train,
        "compress": compress,
        "accuracy": result.accuracy.model_dump(),
        "params": result.params.model_dump(),
        "ranks": result.ranks,
        "wall_s": time.monotonic() - started,
    }


def _load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}


def table(payload: dict) -> str:
    rows = [
        "| setting | N | seed | test acc | compressed test acc | params kept | ranks |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in sorted(payload["runs"].values(), key=lambda r: (r["setting"], r["seed"])):
        params = run["params"]
        rows.append(
            f"| {run['setting']} | {run['factor']} | {run['seed']} "
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
    payload = _load()
    if not args.table:
        for name in args.only or sorted(SETTINGS):
            for seed in args.seeds:
                run = run_setting(name, seed, args.work_dir)
                payload["runs"][f"{name}/s{seed}"] = run
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(payload, indent=1) + "\n")
    print(table(payload))


if __name__ == "__main__":
    main()
