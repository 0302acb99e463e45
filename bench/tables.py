"""Markdown tables of the benchmark results (pasted into bench/README.md).

python -m bench.tables
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, read_result
from bench.plot import load_quality

TOLERANCES = ("0.005", "0.01")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def train_cost_table(result: dict[str, Any]) -> str:
    device = result["machine"]["device"]
    lines = [
        "| setting | device | variant | step ms (median) | x N=1 (median of rounds) "
        "| x N=1 range | peak train memory MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in result["settings"]:
        setting = entry["setting"]
        for row in entry["rows"]:
            memory = row.get("peak_memory", {}).get("peak_mib")
            lines.append(
                f"| {setting['name']} (shortened CPU run: {setting['rounds']} rounds x "
                f"{setting['steps']} steps) | {device} | {row['variant']} "
                f"| {row['step_ms_median']:.1f} | {row['ratio_to_n1_median']:.2f} "
                f"| {row['ratio_to_n1_min']:.2f}-{row['ratio_to_n1_max']:.2f} "
                f"| {'-' if memory is None else f'{memory:.0f}'} |"
            )
    return "\n".join(lines)


def layer_profile_table(result: dict[str, Any]) -> str:
    profile = result.get("layer_profile")
    if not profile:
        return ""
    orders = [k[:-3] for k in profile["rows"][0] if k.endswith("_ms")]
    head = " | ".join(f"{o} ms" for o in orders)
    lines = [
        f"| layer | c_in -> c_out | batch x pixels | auto picks | fastest | {head} |",
        "|---|---|---|---|---|" + "---|" * len(orders),
    ]
    for row in profile["rows"]:
        times = " | ".join(f"{row[o + '_ms']:.1f}" for o in orders)
        lines.append(
            f"| {row['layer']} | {row['c_in']} -> {row['c_out']} | {row['positions']} "
            f"| {row['auto_picks']} | {row['fastest']} | {times} |"
        )
    return "\n".join(lines)


def compress_time_table(result: dict[str, Any]) -> str:
    lines = [
        "| model | input | device | val images | layers | merge s | SVD s | rank search s "
        "(CPU s) | evaluations | params kept | SVD s 2 threads / 1 thread |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    device = result["machine"]["device"]
    for row in result["rows"]:
        probe = row.get("svd_thread_probe", {})
        threads = [v["wall_s"] for v in probe.values()]
        probe_text = " / ".join(f"{t:.2f}" for t in threads) if threads else "-"
        lines.append(
            f"| {row['arch']} (N={row['factor']}, {row['warmup_train_steps']} warm-up steps) "
            f"| {row['dataset'].split(' padded')[0]} {'x'.join(map(str, row['input_shape']))}"
            f"{' (padded)' if 'padded' in row['dataset'] else ''} | {device} "
            f"| {row['val_images']} | {row['layers']} | {row['merge_s']:.2f} "
            f"| {row['svd_s']:.1f} | {row['rank_search_s']:.1f} ({row['rank_search_cpu_s']:.1f}) "
            f"| {row['evaluations']} | {row['params_kept']:.3f} | {probe_text} |"
        )
    return "\n".join(lines)


def quality_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | run | wd | device, epochs, train subset | test acc | params drop @0.5 "
        "| FLOPs drop @0.5 | test acc there | params drop @0.5 on test curve "
        "| params drop @1 | FLOPs drop @1 | test acc there | params drop @1 on test curve |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        setting = result["setting"]
        subset = setting.get("train_subset") or "all"
        where = f"CPU (shortened), {setting['epochs']} ep, {subset}"
        best = result.get("best_weight_decay", {})
        for run in sorted(result["runs"], key=lambda r: (r["factor"], r["weight_decay"])):
            if best.get(f"N={run['factor']}") != run["weight_decay"]:
                continue
            lines.append(
                _quality_row(
                    setting["name"],
                    f"N={run['factor']}",
                    run["weight_decay"],
                    where,
                    run["uncompressed"]["test_accuracy"],
                    run.get("at_tolerance", {}),
                )
            )
        finetune = result.get("finetune")
        if finetune:
            label = f"N=1 + {finetune['finetune_epochs']} ep FT"
            lines.append(
                _quality_row(
                    setting["name"],
                    label,
                    finetune["weight_decay"],
                    where,
                    None,
                    finetune.get("at_tolerance", {}),
                )
            )
    return "\n".join(lines)


def _quality_row(
    name: str, label: str, wd: float, where: str, acc: float | None, tolerance: dict
) -> str:
    cells = [name, label, f"{wd:g}", where, _acc(acc)]
    for tol in TOLERANCES:
        point = tolerance.get(tol, {}).get("selected_on_val")
        if point is None:
            cells += ["none", "none", "-"]
        else:
            cells += [
                _pct(point["params_drop"]),
                _pct(point["flops_drop"]),
                _acc(point["test_accuracy"]),
            ]
        on_test = tolerance.get(tol, {}).get("test_curve")
        cells.append("none" if on_test is None else _pct(on_test["params_drop"]))
    return "| " + " | ".join(cells) + " |"


def weight_decay_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | N | wd | test acc | params drop @0.5 | params drop @1 | best for this N |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        decays = {r["weight_decay"] for r in result["runs"]}
        if len(decays) < 2:
            continue
        best = result.get("best_weight_decay", {})
        for run in sorted(result["runs"], key=lambda r: (r["factor"], r["weight_decay"])):
            at = run.get("at_tolerance", {})
            drops = []
            for tol in TOLERANCES:
                point = at.get(tol, {}).get("selected_on_val")
                drops.append("none" if point is None else _pct(point["params_drop"]))
            mark = "yes" if best.get(f"N={run['factor']}") == run["weight_decay"] else ""
            lines.append(
                f"| {result['setting']['name']} | {run['factor']} | {run['weight_decay']:g} "
                f"| {_acc(run['uncompressed']['test_accuracy'])} | {drops[0]} | {drops[1]} "
                f"| {mark} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    train_cost = read_result("train_cost", args.results)
    if train_cost:
        print("## Training cost\n\n" + train_cost_table(train_cost) + "\n")
        profile = layer_profile_table(train_cost)
        if profile:
            print("### Per-layer (VGG16 conv, N=3)\n\n" + profile + "\n")
    compress_time = read_result("compress_time", args.results)
    if compress_time:
        print("## Compression time\n\n" + compress_time_table(compress_time) + "\n")
    quality = load_quality(args.results)
    if quality:
        print("## Quality\n\n" + quality_table(quality) + "\n")
        print("### Weight decay\n\n" + weight_decay_table(quality) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
