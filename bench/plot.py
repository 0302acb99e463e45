"""Plots of the quality benchmark: accuracy against params and FLOPs kept.

One PNG per setting (results/quality_<setting>.png): test accuracy of the truncated
model along the rank sweep for N=1, 2, 3 (each at its best weight decay) and the
fine-tuned N=1 points, with the tolerance lines (N=1 uncompressed - 0.5 / 1 point).
Settings with a weight-decay grid also get results/quality_<setting>_wd.png.

    python -m bench.plot
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from bench.common import RESULTS_DIR  # noqa: E402

COLORS = {1: "tab:gray", 2: "tab:blue", 3: "tab:red"}
FINETUNE_COLOR = "tab:green"


def load_quality(results_dir: Path) -> list[dict[str, Any]]:
    results = []
    for path in sorted(results_dir.glob("quality_*.json")):
        result = json.loads(path.read_text())
        if result.get("runs") and not result.get("quick"):
            results.append(result)
    return results


def best_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One run per factor: the one at that factor's best weight decay."""
    best = result.get("best_weight_decay", {})
    runs = []
    for run in result["runs"]:
        if best.get(f"N={run['factor']}", run["weight_decay"]) == run["weight_decay"]:
            runs.append(run)
    return sorted(runs, key=lambda r: r["factor"])


def setting_label(result: dict[str, Any]) -> str:
    s = result["setting"]
    subset = f", {s['train_subset']:,} train imgs" if s.get("train_subset") else ""
    return f"{s['arch']} on {s['dataset']} ({s['epochs']} epochs{subset}, CPU, shortened)"


def _tolerance_lines(ax, result: dict[str, Any]) -> None:
    reference = result.get("reference_n1")
    if not reference:
        return
    for tol, style in ((0.005, "--"), (0.01, ":")):
        ax.axhline(
            reference["test_accuracy"] - tol,
            color="black",
            linestyle=style,
            linewidth=0.8,
            label=f"N=1 - {tol * 100:g} pt",
        )


def _accuracy_limits(ax, result: dict[str, Any]) -> None:
    """Zoom on the interesting band: from a few points below N=1 to the top."""
    reference = result.get("reference_n1")
    if not reference:
        return
    top = max(
        [p["test_accuracy"] for run in result["runs"] for p in run["curve"]]
        + [reference["test_accuracy"]]
    )
    ax.set_ylim(reference["test_accuracy"] - 0.10, min(1.0, top + 0.01))


def plot_setting(result: dict[str, Any], out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, label in (
        (axes[0], "params_kept", "parameters kept"),
        (axes[1], "flops_kept", "FLOPs kept"),
    ):
        for run in best_runs(result):
            curve = sorted(run["curve"], key=lambda p: p[key])
            ax.plot(
                [p[key] for p in curve],
                [p["test_accuracy"] for p in curve],
                marker="o",
                markersize=3,
                color=COLORS.get(run["factor"], "tab:purple"),
                label=f"N={run['factor']} (wd {run['weight_decay']:g})",
            )
        finetune = result.get("finetune")
        if finetune and finetune.get("points"):
            points = sorted(finetune["points"], key=lambda p: p[key])
            ax.plot(
                [p[key] for p in points],
                [p["test_accuracy"] for p in points],
                marker="s",
                linestyle="-.",
                color=FINETUNE_COLOR,
                label=f"N=1 + {finetune['finetune_epochs']} ep fine-tune",
            )
        _tolerance_lines(ax, result)
        _accuracy_limits(ax, result)
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} (share of the uncompressed model, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(setting_label(result), fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_weight_decay(result: dict[str, Any], out: Path) -> Path | None:
    decays = sorted({run["weight_decay"] for run in result["runs"]})
    if len(decays) < 2:
        return None
    factors = sorted({run["factor"] for run in result["runs"]})
    fig, axes = plt.subplots(1, len(factors), figsize=(4.2 * len(factors), 4), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, factor in zip(axes, factors, strict=True):
        for index, wd in enumerate(decays):
            run = next(
                (r for r in result["runs"] if r["factor"] == factor and r["weight_decay"] == wd),
                None,
            )
            if run is None:
                continue
            curve = sorted(run["curve"], key=lambda p: p["params_kept"])
            ax.plot(
                [p["params_kept"] for p in curve],
                [p["test_accuracy"] for p in curve],
                marker="o",
                markersize=3,
                color=cmap(index / max(1, len(decays) - 1)),
                label=f"wd {wd:g}",
            )
        _tolerance_lines(ax, result)
        _accuracy_limits(ax, result)
        ax.set_xscale("log")
        ax.set_title(f"N={factor}")
        ax.set_xlabel("parameters kept (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("test accuracy")
    fig.suptitle("weight decay grid: " + setting_label(result), fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    for result in load_quality(args.results):
        name = result["setting"]["name"]
        written = [plot_setting(result, args.results / f"quality_{name}.png")]
        written.append(plot_weight_decay(result, args.results / f"quality_{name}_wd.png"))
        for path in written:
            if path is not None:
                print(f"[plot] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
