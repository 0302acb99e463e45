"""Plain SVD or data-aware truncation (compress.truncation): the same job both ways.

Each row is one `lorita compress` job with every comparison (`--compare all`), run
with `--truncation svd` and again with `--truncation data-aware`. The two jobs of one
setting, dataset and seed share their training checkpoints, so they cut the very same
trained N=3 and N=1 models: only the truncation differs (the comparisons' plain N=1
truncations follow it too; pruning does not truncate). The table reads the
compressed model's test accuracy before and after fine-tuning, its size, and the
peers at that size. Settings (SETTINGS):

- fcn: the FCN family's default recipe from scratch (N=3, 8 epochs, strategy
  accuracy at half a point, 3 epochs of distilled fine-tuning);
- fcn-warm: the same FCN job given the weights of the N=1 model that the fcn row of
  the same dataset and seed trained (the "from pretrained" recipe: 3 epochs, then 1
  of fine-tuning), as a user compressing a model they trained;
- resnet20-10k: ResNet20, the CNN family's default recipe for 6 epochs on 10,000
  training images (fine-tuning 1 epoch, search after fine-tuning);
- vgg11-10k: the same for VGG11.

    python -m bench.truncation                              # fcn, MNIST and Fashion-MNIST, seed 0
    python -m bench.truncation --setting fcn-warm --datasets mnist --seeds 0 1
    python -m bench.truncation --setting resnet20-10k --datasets fashion-mnist
    python -m bench.truncation --table                      # the stored table only

Results are merged into bench/results/truncation.json, keyed by setting, dataset,
seed, truncation and machine (the same seed trains a different model on another CPU).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).parent / "results" / "truncation.json"
TRUNCATIONS = ("svd", "data-aware")
DATASETS = ("mnist", "fashion-mnist")
# setting -> (architecture, training fields, data fields); fcn-warm adds the weights.
SETTINGS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "fcn": ("fcn", {"epochs": 8}, {}),
    "fcn-warm": ("fcn", {}, {}),
    "resnet20-10k": ("resnet20", {"epochs": 6}, {"train_subset": 10_000}),
    "vgg11-10k": ("vgg11", {"epochs": 6}, {"train_subset": 10_000}),
}


def _user_weights(dataset: str, seed: int, work: Path) -> Path:
    """The N=1 model the fcn row of `dataset` and `seed` trained, as an upload."""
    import torch
    from safetensors.torch import save_file

    checkpoint = work / f"{dataset}-s{seed}-checkpoints" / "baseline.pt"
    if not checkpoint.exists():
        raise SystemExit(
            f"{checkpoint} is missing: run `python -m bench.truncation --setting fcn "
            f"--datasets {dataset} --seeds {seed}` first (same --work-dir)"
        )
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    path = work / f"{dataset}-s{seed}-n1.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, path)
    return path


def run_job_with(
    dataset: str, seed: int, truncation: str, work: Path, setting: str = "fcn"
) -> dict[str, Any]:
    from bench.common import machine_info
    from bench.fcn_recipe import machine_tag
    from core.pipeline import run_job
    from core.spec import COMPARISONS, JobSpec

    arch, train, data = SETTINGS[setting]
    model: dict[str, Any] = {"arch": arch}
    if setting == "fcn-warm":
        model["weights"] = str(_user_weights(dataset, seed, work))
    spec = JobSpec.model_validate(
        {
            "model": model,
            "data": {"dataset": dataset, **data},
            "lorita": {"factor": 3},
            "train": {"seed": seed, **train},
            "compress": {"truncation": truncation},
            "comparisons": list(COMPARISONS),
        }
    )
    # The fcn setting keeps the folder names its first rows were stored with.
    prefix = f"{dataset}-s{seed}" if setting == "fcn" else f"{setting}-{dataset}-s{seed}"
    started = time.monotonic()
    result = run_job(
        spec,
        work / f"{prefix}-{truncation}",
        device="cpu",
        checkpoint_dir=work / f"{prefix}-checkpoints",
    )
    chosen = next(p for p in result.curve if p.test_accuracy is not None)
    comparisons = {
        name: {
            "accuracy": block.accuracy.compressed,
            "params_kept": block.params_kept,
            "flops_kept": block.flops_kept,
            "ranks": block.ranks,
        }
        for name, block in (result.comparisons or {}).items()
    }
    n1 = next(iter((result.comparisons or {}).values()), None)
    machine = machine_info("cpu")
    return {
        "setting": setting,
        "dataset": dataset,
        "seed": seed,
        "truncation": truncation,
        "processor": machine["processor"],
        "load_average_1m": machine["load_average_1m"],
        "day": time.strftime("%Y-%m-%d"),
        "machine": machine_tag(),
        "n1_accuracy": n1.accuracy.uncompressed if n1 is not None else None,
        "accuracy": result.accuracy.model_dump(),
        "accuracy_before_finetune": chosen.test_accuracy,
        "params_kept": result.params.compressed / result.params.uncompressed,
        "flops_kept": result.flops.compressed / result.flops.uncompressed,
        "ranks": result.ranks,
        "comparisons": comparisons,
        "verdict": result.verdict.best if result.verdict else None,
        # From the user's weights: that model, and it truncated the same way at
        # LoRITa's size without any training.
        "pretrained": (
            {
                "accuracy": result.pretrained.accuracy,
                "truncated_accuracy": result.pretrained.plain_truncation.accuracy,
                "truncated_params_kept": result.pretrained.plain_truncation.params_kept,
            }
            if result.pretrained is not None
            else None
        ),
        "wall_s": time.monotonic() - started,
    }


def _key(run: dict[str, Any]) -> str:
    return "/".join(
        [
            run.get("setting", "fcn"),
            run["dataset"],
            f"s{run['seed']}",
            run["truncation"],
            run["processor"],
            run["day"],
        ]
        + ([run["machine"]] if run.get("machine") else [])
    )


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def table(payload: dict[str, Any]) -> str:
    rows = [
        "| setting | dataset | seed | truncation | day (machine) | N=1 | N=3 | before ft "
        "| after ft "
        "| params kept | ranks | N=1 trunc. + ft (same size) | pruning + ft | N=1 own search + ft "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def order(run: dict[str, Any]) -> tuple:
        return (
            list(SETTINGS).index(run.get("setting", "fcn")),
            run["dataset"],
            run["seed"],
            run["day"],
            run.get("machine", ""),
            TRUNCATIONS.index(run["truncation"]),
        )

    for run in sorted(payload["runs"].values(), key=order):
        peers = run["comparisons"]

        def peer(name: str, peers: dict = peers) -> str:
            block = peers.get(name)
            if block is None:
                return ""
            return f"{_pct(block['accuracy'])} at {100 * block['params_kept']:.1f}%"

        rows.append(
            f"| {run.get('setting', 'fcn')} | {run['dataset']} | {run['seed']} "
            f"| {run['truncation']} "
            f"| {run['day']} ({run.get('machine', '')}) "
            f"| {_pct(run['n1_accuracy'])} | {_pct(run['accuracy']['uncompressed'])} "
            f"| {_pct(run['accuracy_before_finetune'])} | {_pct(run['accuracy']['compressed'])} "
            f"| {100 * run['params_kept']:.1f}% "
            f"| {', '.join(str(r) for r in run['ranks'].values())} "
            f"| {peer('plain+finetune')} | {peer('pruning')} | {peer('plain')} "
            f"| {run['verdict'] or ''} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="fcn")
    parser.add_argument("--datasets", nargs="*", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--truncations", nargs="*", choices=TRUNCATIONS, default=TRUNCATIONS)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/lorita-truncation"))
    parser.add_argument("--table", action="store_true", help="print the stored table only")
    args = parser.parse_args()
    from bench.common import load_runs, store_run

    payload = load_runs(RESULTS)
    if not args.table:
        for dataset in args.datasets:
            for seed in args.seeds:
                for truncation in args.truncations:
                    run = run_job_with(dataset, seed, truncation, args.work_dir, args.setting)
                    payload = store_run(RESULTS, _key(run), run)
    print(table(payload))


if __name__ == "__main__":
    main()
