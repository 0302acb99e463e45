"""LoRITa against the peers a user would pick instead, from trained models.

For one setting (an architecture on a dataset), from a plain N=1 model and a LoRITa
N=3 model trained with the same recipe (each a `lorita compress` output folder whose
model.safetensors is the uncompressed model: `--strategy uniform --keep-fraction 1.0`):

- N=1 + truncation       the N=1 model's SVD truncated along the rank search's budget family;
- N=1 + truncation + ft  the same, then fine-tuned;
- pruning + ft           Torch-Pruning (L2 magnitude, structured) of the N=1 model, then
                         fine-tuned;
- LoRITa N=3 (+ ft)      the N=3 model truncated along the same family (then fine-tuned).

Every method is run at the same grid of kept shares (of params or FLOPs, --target) and
measured on the test split; "drop at 0.5 / 1 point" is the most compressed grid point
whose test accuracy stays within that many points of the uncompressed N=1 model (the
same rule for every method, no interpolation). The models at the 1-point mark are timed
on the CPU at batch 1 and 64 in interleaved rounds.

    python -m bench.peers --setting resnet20-fashion --n1 RUN_N1 --n3 RUN_N3 --target flops
    python -m bench.peers --setting fcn-mnist --train --arch fcn --dataset mnist --epochs 8
    python -m bench.peers --setting resnet20-fashion --plot
    python -m bench.peers --setting resnet20-fashion --add-lorita RUN_N2   # another N
    python -m bench.peers ... --also-rate pruning_ft=0.1 --also-rate n1_trunc_ft=1

Fine-tuning runs at a fixed share of the training's learning rate per method: the
truncated models at core.job.stages.FINETUNE_LR_SCALE (LoRITa's), the pruned one at the
training's own rate (a job tries both for each peer and keeps the better on validation,
compress.finetune_lr_scales). `--also-rate METHOD=SCALE` adds a row: that
fine-tuned method again, retrained at SCALE times the training's rate, so that every
method can be read at the rate that suits it.

`--add-lorita` puts one more LoRITa model (a run with another N, same architecture, data
and recipe) into an existing result: its truncation (+ fine-tune) curves on the stored
grid, judged against the stored N=1 reference, timed side by side with its own dense
merged model (which has the N=1 network's exact structure).

Results: bench/results/peers_<setting>.json; `table(payload)` renders them as Markdown,
and `--plot` redraws bench/results/peers_<setting>.png from that file (and prints the table).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from bench.common import (
    RESULTS_DIR,
    add_device_options,
    command_line,
    float_list,
    machine_info,
    most_compressed_point,
    read_result,
    write_result,
)
from core.factorize import eligible_layers
from core.job.stages import FINETUNE_LR_SCALE, SPLIT_SEED
from core.measure import count_flops, count_params, evaluate
from core.peers.compare import finetune_recipe, truncate_to_share
from core.peers.latency import cpu_latencies
from core.peers.pruning import prune_to_budget
from core.spec import DEFAULT_FINETUNE_LR_SCALES, JobSpec
from core.train import train_model

TOLERANCES = (0.005, 0.01)
DEFAULT_SHARES = (0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05)
# "Most compressed": the fewest FLOPs kept, then the fewest params.
MOST_COMPRESSED_FIRST = ("flops_kept", "params_kept")
METHODS = {
    "n1_trunc": "N=1 + truncation",
    "n1_trunc_ft": "N=1 + truncation + fine-tune",
    "pruning": "Torch-Pruning (no fine-tune)",
    "pruning_ft": "Torch-Pruning + fine-tune",
    "n2_trunc": "LoRITa N=2 + truncation",
    "n2_trunc_ft": "LoRITa N=2 + truncation + fine-tune",
    "n3_trunc": "LoRITa N=3 + truncation",
    "n3_trunc_ft": "LoRITa N=3 + truncation + fine-tune",
}
# The methods that fine-tune, and so can be run again at another rate (--also-rate).
FINETUNED = ("n1_trunc_ft", "pruning_ft", "n3_trunc_ft")
# Results written before the file recorded its rates fine-tuned every method at 0.1x.
EARLIER_LR_SCALES = dict.fromkeys((*FINETUNED, "n2_trunc_ft"), 0.1)
# Peers dashed, LoRITa solid; one color per method.
METHOD_STYLES = {
    "n1_trunc": ("tab:blue", "--"),
    "n1_trunc_ft": ("tab:orange", "--"),
    "pruning": ("tab:brown", "--"),
    "pruning_ft": ("tab:green", "--"),
    "n2_trunc": ("tab:olive", "-"),
    "n2_trunc_ft": ("tab:cyan", "-"),
    "n3_trunc": ("tab:red", "-"),
    "n3_trunc_ft": ("tab:purple", "-"),
}
# The accuracy band drawn: from this many points below the N=1 reference to the top.
PLOT_DEPTH_POINTS = 12.0
LEGEND_COLUMNS = 3


# ------------------------------------------------------------------ inputs


def read_run(folder: Path) -> tuple[JobSpec, nn.Module]:
    """The resolved spec (report.json) and the uncompressed network (model.safetensors)."""
    from core.models import build_model

    report = json.loads((folder / "report.json").read_text())
    spec = JobSpec.model_validate(report["spec"])
    m = spec.model
    network = build_model(m.arch, m.num_classes, m.in_channels, m.image_size)
    network.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return spec, network.eval()


def train_runs(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """Train the N=1 and N=3 models here (short settings such as the FCN on MNIST)."""
    from core.pipeline import run_job

    folders = []
    for factor in (1, 3):
        document = {
            "model": {"arch": args.arch},
            "data": {"dataset": args.dataset, "train_subset": args.train_subset},
            "lorita": {"factor": factor},
            "train": {"epochs": args.epochs, "seed": args.seed},
            "compress": {"strategy": "uniform", "keep_fraction": 1.0},
        }
        out = work / f"{args.setting}-n{factor}"
        print(f"training N={factor} into {out}", file=sys.stderr)
        run_job(JobSpec.model_validate(document), out, data_dir=args.data_dir, device=args.device)
        folders.append(out)
    return folders[0], folders[1]


def load_splits(spec: JobSpec, data_dir: Path | None):
    from core.data import load_dataset

    return load_dataset(
        spec.data.dataset,
        data_dir,
        val_fraction=spec.data.val_fraction,
        seed=SPLIT_SEED,
        train_subset=spec.data.train_subset,
    )


# ------------------------------------------------------------------ one setting


class Setting:
    def __init__(self, spec: JobSpec, splits: Any, args: argparse.Namespace) -> None:
        from core.models import default_exclude

        self.spec, self.splits, self.args = spec, splits, args
        m = spec.model
        self.shape = (m.in_channels, m.image_size, m.image_size)
        self.exclude = list(default_exclude(m.arch)) + list(spec.lorita.exclude or [])
        self.epochs = max(args.finetune_epochs, 1)
        # The rates the job uses: the pruned network retrains at its comparison's rate.
        self.lr_scales = lr_scales()

    def finetuned(self, model: nn.Module, run: str, scale: float | None = None) -> nn.Module:
        """`model` fine-tuned in place at `scale` times the training's rate (default:
        the rate of the job's method `run`)."""
        if scale is None:
            scale = self.lr_scales.get(run, FINETUNE_LR_SCALE)
        recipe = finetune_recipe(self.spec.train, self.epochs, scale)
        train_model(model, self.splits, recipe, device=self.args.device, run=run)
        return model.eval()

    def accuracy(self, model: nn.Module) -> float:
        return evaluate(model, self.splits.test, self.args.device).accuracy

    def point(self, model: nn.Module, dense: nn.Module, share: float) -> dict[str, Any]:
        return {
            "requested": share,
            "params_kept": count_params(model) / count_params(dense),
            "flops_kept": count_flops(model, self.shape) / max(count_flops(dense, self.shape), 1),
            "test_accuracy": self.accuracy(model),
        }

    def record(self, built, dense, share, curves, models, started: float) -> None:
        """Score the `built` models of one share into `curves` / `models` and say so."""
        for name, model in built.items():
            curves[name].append(self.point(model, dense, share))
            models[name][share] = model
        print(
            f"share {share:.3f}: "
            + ", ".join(f"{n} {c[-1]['test_accuracy']:.4f}" for n, c in curves.items() if c)
            + f" ({time.monotonic() - started:.0f}s)",
            file=sys.stderr,
        )

    def truncated(self, dense: nn.Module, share: float) -> nn.Module:
        names = eligible_layers(dense, include=self.spec.lorita.include, exclude=self.exclude)
        device = self.args.device
        return truncate_to_share(dense, names, share, self.args.target, self.shape, device)[0]

    def sweep(self, n1: nn.Module, n3: nn.Module, shares: list[float]):
        """Every method at every share; returns the curves and the models kept by share."""
        fine_tune = self.args.finetune_epochs > 0
        extra = list(self.args.also_rate) if fine_tune else []
        names = list(METHODS) + [rate_key(method, scale) for method, scale in extra]
        curves: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        models: dict[str, dict[float, nn.Module]] = {name: {} for name in names}
        for share in shares:
            started = time.monotonic()
            pruned = prune_to_budget(
                n1, self.shape, target=self.args.target, keep=share, closest=True
            ).model
            built = {
                "n1_trunc": self.truncated(n1, share),
                "n3_trunc": self.truncated(n3, share),
            }
            if fine_tune:
                starts = {"n1_trunc_ft": n1, "n3_trunc_ft": n3}
                for method, scale in extra:
                    key = rate_key(method, scale)
                    # A copy: the job's own row fine-tunes the pruned network in place.
                    start = (
                        copy.deepcopy(pruned)
                        if method == "pruning_ft"
                        else self.truncated(starts[method], share)
                    )
                    built[key] = self.finetuned(start, key, scale)
                built["n1_trunc_ft"] = self.finetuned(self.truncated(n1, share), "n1_trunc_ft")
                built["n3_trunc_ft"] = self.finetuned(self.truncated(n3, share), "n3_trunc_ft")
                built["pruning_ft"] = self.finetuned(pruned, "pruning_ft")
            else:
                built["pruning"] = pruned
            self.record(built, n1, share, curves, models, started)
        return {k: v for k, v in curves.items() if v}, models


def lr_scales() -> dict[str, float]:
    """Per fine-tuned method, the multiple of the training's rate the job retrains at."""
    return {
        "n1_trunc_ft": FINETUNE_LR_SCALE,
        "pruning_ft": max(DEFAULT_FINETUNE_LR_SCALES),
        "n2_trunc_ft": FINETUNE_LR_SCALE,
        "n3_trunc_ft": FINETUNE_LR_SCALE,
    }


def rate_key(method: str, scale: float) -> str:
    """The row of `method` fine-tuned again at `scale` (--also-rate)."""
    return f"{method}@{scale:g}"


def method_label(name: str, payload: dict[str, Any]) -> str:
    """The table's and the plot's name of a row, with the rate it was fine-tuned at."""
    method, _, extra = name.partition("@")
    label = METHODS.get(method, method)
    if extra:
        return f"{label} ({extra}x lr)"
    scale = payload.get("lr_scales", EARLIER_LR_SCALES).get(method)
    return label if scale is None else f"{label} ({scale:g}x lr)"


def ordered_rows(names) -> list[str]:
    """The table's rows: METHODS' order, each one's --also-rate rows after it."""
    names = list(names)
    rank = {method: index for index, method in enumerate(METHODS)}
    return sorted(names, key=lambda n: (rank.get(n.partition("@")[0], len(rank)), "@" in n, n))


def run_setting(args: argparse.Namespace, n1_dir: Path, n3_dir: Path) -> dict[str, Any]:
    spec1, n1 = read_run(n1_dir)
    spec3, n3 = read_run(n3_dir)
    if spec1.model.arch != spec3.model.arch or spec1.data.dataset != spec3.data.dataset:
        raise SystemExit("the N=1 and N=3 runs must be the same architecture on the same data")
    splits = load_splits(spec1, args.data_dir)
    setting = Setting(spec1, splits, args)
    n1, n3 = n1.to(args.device), n3.to(args.device)
    reference = {"n1": setting.accuracy(n1), "n3": setting.accuracy(n3)}
    shares = sorted(args.shares, reverse=True)
    curves, models = setting.sweep(n1, n3, shares)
    summary, latency = summarize(
        curves, models, reference["n1"], {"n1_dense": n1, "n3_dense": n3}, setting.shape
    )

    return {
        "setting": args.setting,
        "arch": spec1.model.arch,
        "dataset": spec1.data.dataset,
        "epochs": {"n1": spec1.train.epochs, "n3": spec3.train.epochs},
        "finetune_epochs": args.finetune_epochs,
        "lr_scales": lr_scales(),
        "target": args.target,
        "shares": shares,
        "runs": {"n1": n1_dir.name, "n3": n3_dir.name},
        "reference_test_accuracy": reference,
        "uncompressed": {
            "params": count_params(n1),
            "flops": count_flops(n1, setting.shape),
            "latency_ms": {f"batch_{b}": t for b, t in latency["n1_dense"].items()},
        },
        "curves": curves,
        "summary": summary,
        "machine": machine_info(args.device),
        "command": command_line(),
    }


def summarize(
    curves: dict[str, list[dict[str, Any]]],
    models: dict[str, dict[float, nn.Module]],
    reference: float,
    dense: dict[str, nn.Module],
    shape: tuple[int, int, int],
) -> tuple[dict[str, Any], dict[str, dict[int, float]]]:
    """Per method, the most compressed point within each tolerance of `reference`; the
    models at the 1-point mark are timed together with the `dense` ones (interleaved)."""
    summary: dict[str, Any] = {}
    timed = dict(dense)
    for name, curve in curves.items():
        summary[name] = {}
        for tol in TOLERANCES:
            floor = reference - tol
            point = most_compressed_point(curve, floor, "test_accuracy", MOST_COMPRESSED_FIRST)
            summary[name][str(tol)] = point
            if point is not None and tol == max(TOLERANCES):
                timed[name] = models[name][point["requested"]]
    latency = cpu_latencies(timed, shape)
    for name, by_batch in latency.items():
        if name in summary:
            summary[name]["latency_ms_at_1pt"] = {f"batch_{b}": t for b, t in by_batch.items()}
    return summary, latency


def add_lorita(args: argparse.Namespace, payload: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`payload` with the LoRITa run in `folder` (another N) added on the stored grid."""
    spec, network = read_run(folder)
    factor = spec.lorita.factor
    if (spec.model.arch, spec.data.dataset) != (payload["arch"], payload["dataset"]):
        raise SystemExit(
            f"{folder} is {spec.model.arch} on {spec.data.dataset}; this result is "
            f"{payload['arch']} on {payload['dataset']}"
        )
    key = f"n{factor}"
    if f"{key}_trunc" not in METHODS:
        raise SystemExit(f"no rows for N={factor}: the table knows {sorted(METHODS)}")
    # The stored grid and fine-tuning, whatever the command line says.
    args.target, args.finetune_epochs = payload["target"], payload["finetune_epochs"]
    setting = Setting(spec, load_splits(spec, args.data_dir), args)
    network = network.to(args.device)
    curves = {f"{key}_trunc": [], f"{key}_trunc_ft": []}
    models: dict[str, dict[float, nn.Module]] = {name: {} for name in curves}
    for share in payload["shares"]:
        started = time.monotonic()
        built = {f"{key}_trunc": setting.truncated(network, share)}
        if args.finetune_epochs > 0:
            tuned = setting.finetuned(setting.truncated(network, share), f"{key}_trunc_ft")
            built[f"{key}_trunc_ft"] = tuned
        setting.record(built, network, share, curves, models, started)
    curves = {name: curve for name, curve in curves.items() if curve}
    reference = payload["reference_test_accuracy"]["n1"]
    dense_name = f"{key}_dense"
    summary, latency = summarize(curves, models, reference, {dense_name: network}, setting.shape)
    payload["curves"].update(curves)
    payload["summary"].update(summary)
    payload["reference_test_accuracy"][key] = setting.accuracy(network)
    payload["epochs"][key] = spec.train.epochs
    payload["runs"][key] = folder.name
    payload.setdefault("added", {})[key] = {
        # Its rows were timed in their own run, beside this dense model (not beside the
        # N=1 run's): compare their latency with this, not with the table's first row.
        "dense_latency_ms": {f"batch_{b}": t for b, t in latency[dense_name].items()},
        "machine": machine_info(args.device),
        "command": command_line(),
    }
    return payload


# ------------------------------------------------------------------ output


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def table(payload: dict[str, Any]) -> str:
    """Markdown: per method, accuracy and params/FLOPs drop at 0.5 and 1 point, latency."""
    runs = sorted(payload["epochs"])  # n1, n2, n3
    epochs = " / ".join(f"N={key[1:]} {payload['epochs'][key]} epochs" for key in runs)
    accuracies = ", ".join(
        f"N={key[1:]} uncompressed {_pct(payload['reference_test_accuracy'][key], 2)}"
        for key in runs
    )
    lines = [
        f"{payload['arch']} on {payload['dataset']}, {epochs}, fine-tune "
        f"{payload['finetune_epochs']} epochs, grid on {payload['target']}; {accuracies} (test)",
        "",
        "| method | acc @0.5 pt | params drop @0.5 | FLOPs drop @0.5 | acc @1 pt "
        "| params drop @1 | FLOPs drop @1 | CPU ms b1 @1 | CPU ms b64 @1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    dense = payload["uncompressed"]["latency_ms"]
    reference = _pct(payload["reference_test_accuracy"]["n1"], 2)
    lines.append(
        f"| N=1 uncompressed | {reference} | 0% | 0% | {reference} | 0% | 0% "
        f"| {dense['batch_1']:.3f} | {dense['batch_64']:.3f} |"
    )
    for name in ordered_rows(payload["summary"]):
        row = payload["summary"][name]
        cells = [method_label(name, payload)]
        for tol in TOLERANCES:
            point = row.get(str(tol))
            cells += [
                _pct(point and point["test_accuracy"], 2),
                _pct(point and point["params_drop"]),
                _pct(point and point["flops_drop"]),
            ]
        latency = row.get("latency_ms_at_1pt") or {}
        cells += [
            f"{latency['batch_1']:.3f}" if latency else "—",
            f"{latency['batch_64']:.3f}" if latency else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _epochs(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def _plot_title(payload: dict[str, Any]) -> str:
    epochs = payload["epochs"]
    trained = (
        _epochs(epochs["n1"])
        if epochs["n1"] == epochs["n3"]
        else f"N=1 {epochs['n1']} / N=3 {_epochs(epochs['n3'])}"
    )
    machine = payload["machine"]
    device = machine["device"] + (f", {machine['gpu']}" if machine.get("gpu") else "")
    return (
        f"{payload['arch']} on {payload['dataset']}: {trained}, "
        f"fine-tune {_epochs(payload['finetune_epochs'])} ({device})"
    )


def plot(payload: dict[str, Any], path: Path) -> Path:
    """Test accuracy against the FLOPs and the params kept, one line per method, with
    the N=1 reference and the 0.5 / 1 point tolerance lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = 100 * payload["reference_test_accuracy"]["n1"]
    bottom = reference - PLOT_DEPTH_POINTS
    top = max(
        [reference]
        + [100 * point["test_accuracy"] for curve in payload["curves"].values() for point in curve]
    )
    axis_labels = {"flops_kept": "FLOPs kept", "params_kept": "params kept"}
    # The grid's own axis (--target) first.
    keys = sorted(axis_labels, key=lambda key: key != f"{payload['target']}_kept")
    # The legend sits below the panels, one row per three entries: the figure grows with
    # it so that it never covers the axis labels.
    entries = len(payload["curves"]) + 1 + len(TOLERANCES)
    legend_height = 0.22 * math.ceil(entries / LEGEND_COLUMNS)  # inches
    height = 5.0 + legend_height
    figure, axes = plt.subplots(1, len(keys), figsize=(12, height), sharey=True)
    for axis, key in zip(axes, keys, strict=True):
        for name, curve in payload["curves"].items():
            points = sorted(curve, key=lambda point: point[key])
            accuracies = [100 * point["test_accuracy"] for point in points]
            method, _, extra = name.partition("@")
            color, style = METHOD_STYLES.get(method, ("black", ":"))
            style = ":" if extra else style
            label = method_label(name, payload)
            if max(accuracies) < bottom:
                label += f" (below the range: {max(accuracies):.1f}% and less)"
            axis.plot(
                [point[key] for point in points],
                accuracies,
                style,
                marker="o",
                color=color,
                label=label,
            )
        for tol, line in zip((0.0, *TOLERANCES), ("-", ":", "-."), strict=True):
            axis.axhline(
                reference - 100 * tol,
                color="black",
                linestyle=line,
                linewidth=0.8,
                label="N=1 uncompressed" + (f" - {100 * tol:g} pt" if tol else ""),
            )
        axis.set_ylim(bottom, top + 0.5)
        axis.set_xlabel(f"{axis_labels[key]} (share, measured)")
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    # Below the panels, so that it hides no point whatever the curves do.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="lower center", ncol=LEGEND_COLUMNS, fontsize=8, frameon=False
    )
    figure.suptitle(_plot_title(payload))
    figure.tight_layout(rect=(0, (legend_height + 0.1) / height, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def rate_choice(text: str) -> tuple[str, float]:
    """METHOD=SCALE of --also-rate."""
    method, sep, scale = text.partition("=")
    if not sep or method not in FINETUNED:
        raise argparse.ArgumentTypeError(
            f"expected METHOD=SCALE with METHOD one of {', '.join(FINETUNED)}, got {text!r}"
        )
    try:
        value = float(scale)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"SCALE must be a number above 0, got {scale!r}")
    return method, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", required=True, help="name of the result file: peers_SETTING.json")
    p.add_argument(
        "--plot",
        action="store_true",
        help="draw peers_SETTING.png from the saved peers_SETTING.json and print its table",
    )
    p.add_argument("--n1", type=Path, help="folder of the trained N=1 run")
    p.add_argument("--n3", type=Path, help="folder of the trained N=3 run")
    p.add_argument(
        "--add-lorita",
        type=Path,
        metavar="RUN",
        help="add a LoRITa run of another N to the stored peers_SETTING.json",
    )
    p.add_argument("--train", action="store_true", help="train both runs first (short settings)")
    p.add_argument("--arch", default="fcn", help="with --train")
    p.add_argument("--dataset", default="mnist", help="with --train")
    p.add_argument("--epochs", type=int, default=8, help="with --train")
    p.add_argument("--train-subset", type=int, help="with --train")
    p.add_argument("--seed", type=int, default=0, help="with --train")
    p.add_argument("--work-dir", type=Path, help="with --train: where the runs go (default tmp)")
    p.add_argument("--target", choices=("params", "flops"), default="flops")
    p.add_argument(
        "--shares",
        type=float_list,
        default=list(DEFAULT_SHARES),
        help="kept shares of --target to run every method at (comma-separated)",
    )
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument(
        "--also-rate",
        type=rate_choice,
        action="append",
        default=[],
        metavar="METHOD=SCALE",
        help=f"also fine-tune METHOD ({', '.join(FINETUNED)}) at SCALE x the training's "
        "learning rate, as a row of its own (repeatable)",
    )
    add_device_options(p)
    args = p.parse_args(argv)
    chosen = args.plot or args.train or args.add_lorita is not None
    if not chosen and (args.n1 is None or args.n3 is None):
        p.error("give --n1 and --n3 run folders, or --train, --add-lorita or --plot")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot:
        name = f"peers_{args.setting}"
        payload = read_result(name, args.results_dir)
        if payload is None:
            raise SystemExit(f"no {name}.json in the results folder: run the benchmark first")
        print(table(payload))
        path = plot(payload, (args.results_dir or RESULTS_DIR) / f"{name}.png")
        print(f"\ndrawn to {path}", file=sys.stderr)
        return 0
    if args.add_lorita is not None:
        name = f"peers_{args.setting}"
        payload = read_result(name, args.results_dir)
        if payload is None:
            raise SystemExit(f"no {name}.json in the results folder: run the benchmark first")
        payload = add_lorita(args, payload, args.add_lorita)
        path = write_result(name, payload, args.results_dir)
        print(table(payload))
        print(f"\nwritten to {path}", file=sys.stderr)
        return 0
    if args.train:
        work = args.work_dir or Path(tempfile.mkdtemp(prefix="peers-"))
        args.n1, args.n3 = train_runs(args, work)
    payload = run_setting(args, args.n1, args.n3)
    path = write_result(f"peers_{args.setting}", payload, args.results_dir)
    print(table(payload))
    print(f"\nwritten to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
