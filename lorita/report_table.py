"""The summary `lorita compress` prints on the terminal for a Result.

The table of the uncompressed against the compressed model (accuracy, size, cost),
then the chosen ranks and the blocks the other view modules add: the baseline, the
user's own model, the int8 models, the warnings and the comparisons.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.recipes import epochs_text
from core.result import Result
from lorita.comparison_table import format_comparisons
from lorita.int8_view import int8_lines
from lorita.pretrained_view import pretrained_lines
from lorita.result_notes import (
    baseline_lines,
    finetune_search_lines,
    relative_change,
    warning_lines,
)


def _human(value: float, unit: str = "") -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f} {suffix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def format_table(
    result: Result, out_dir: Path, wall_s: float, terms: Callable[[str], str] = str
) -> str:
    """The human-readable summary printed after `lorita compress`."""
    spec = result.spec
    accuracy, val = result.accuracy, result.val_accuracy
    params, flops = result.params, result.flops
    latency, size = result.latency_ms, result.file_size_bytes
    rows = [
        ("", "uncompressed", "compressed", "change"),
        (
            "test accuracy",
            f"{100 * accuracy.uncompressed:.2f}%",
            f"{100 * accuracy.compressed:.2f}%",
            f"{100 * (accuracy.compressed - accuracy.uncompressed):+.2f} pts",
        ),
        (
            "val accuracy",
            f"{100 * val.uncompressed:.2f}%",
            f"{100 * val.compressed:.2f}%",
            f"{100 * (val.compressed - val.uncompressed):+.2f} pts",
        ),
        (
            "parameters",
            f"{params.uncompressed:,}",
            f"{params.compressed:,}",
            relative_change(params.uncompressed, params.compressed),
        ),
        (
            "FLOPs",
            _human(flops.uncompressed),
            _human(flops.compressed),
            relative_change(flops.uncompressed, flops.compressed),
        ),
        (
            f"latency ({result.device}, batch 1)",
            f"{latency.uncompressed:.3f} ms",
            f"{latency.compressed:.3f} ms",
            relative_change(latency.uncompressed, latency.compressed),
        ),
        (
            "file size",
            _human(size.uncompressed, "B"),
            _human(size.compressed, "B"),
            relative_change(size.uncompressed, size.compressed),
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    epochs, drop = spec["train"]["epochs"], spec["compress"]["max_accuracy_drop"]
    lines = [
        f"LoRITa: {spec['model']['arch']} on {spec['data']['dataset']}, N={result.factor}, "
        f"{epochs_text(epochs)}, strategy {spec['compress']['strategy']} "
        f"(max accuracy drop {drop:g} = {100 * drop:.2f} pts, on val)",
        "",
    ]
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
    ranks = ", ".join(
        f"{name}={rank}/{result.layers[name].full_rank}" for name, rank in result.ranks.items()
    )
    lines += ["", f"ranks: {ranks}"]
    lines += finetune_search_lines(result)
    lines += baseline_lines(result)
    lines += pretrained_lines(result)
    quantized = int8_lines(result)
    if quantized:
        lines += ["", *quantized]
    warnings = warning_lines(result, terms)
    if warnings:
        lines += ["", *warnings]
    comparisons = format_comparisons(result)
    if comparisons:
        lines += ["", comparisons, ""]
    lines.append(f"artifacts in {out_dir} ({', '.join(result.artifacts)}); {wall_s:.0f}s")
    return "\n".join(lines)
