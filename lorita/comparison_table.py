"""The side-by-side table of a job's comparisons and its verdict, as `lorita compress` prints.

One row per method, all measured the same way: test accuracy of the compressed model,
the share of the N=1 model's params and FLOPs it keeps, and CPU latency at batch 1
and 64 (measured in interleaved rounds). The first row is the uncompressed N=1 model
every comparison starts from.
"""

from __future__ import annotations

from core.method_names import method_name, reference_name
from core.result import Result

HEADER = ("method", "test acc", "params kept", "FLOPs kept", "CPU ms b1", "CPU ms b64")


def _row(label: str, accuracy: float, params: float, flops: float, b1: float, b64: float):
    return (
        label,
        f"{100 * accuracy:.2f}%",
        f"{100 * params:.1f}%",
        f"{100 * flops:.1f}%",
        f"{b1:.3f}",
        f"{b64:.3f}",
    )


def comparison_rows(result: Result) -> list[tuple[str, ...]]:
    """The table's rows (header first): N=1 uncompressed, LoRITa, then each comparison."""
    rows: list[tuple[str, ...]] = [HEADER]
    blocks = result.comparisons or {}
    first = next(iter(blocks.values()), None)
    if first is not None:
        rows.append(
            _row(
                reference_name(result.pretrained is not None),
                first.accuracy.uncompressed,
                1.0,
                1.0,
                first.latency_cpu.batch_1.uncompressed,
                first.latency_cpu.batch_64.uncompressed,
            )
        )
        plain_params, plain_flops = first.params.uncompressed, first.flops.uncompressed
    else:
        plain_params, plain_flops = result.params.uncompressed, result.flops.uncompressed
    latency = result.latency_cpu
    # One fine-tuning record per epoch run.
    lorita_epochs = len(result.finetune_history or ())
    rows.append(
        _row(
            method_name("lorita", lorita_epochs, factor=result.factor),
            result.accuracy.compressed,
            result.params.compressed / max(plain_params, 1),
            result.flops.compressed / max(plain_flops, 1),
            latency.batch_1.compressed if latency else result.latency_ms.compressed,
            latency.batch_64.compressed if latency else float("nan"),
        )
    )
    for method, block in blocks.items():
        rows.append(
            _row(
                method_name(method, block.finetune_epochs),
                block.accuracy.compressed,
                block.params_kept,
                block.flops_kept,
                block.latency_cpu.batch_1.compressed,
                block.latency_cpu.batch_64.compressed,
            )
        )
    return rows


def rate_line(result: Result) -> str:
    """Which learning rate each fine-tuning kept (LoRITa's, then each peer's), of those
    it tried ("" if none tried more than one)."""
    kept: dict[str, tuple[float, list]] = {}
    if result.finetune_lr_trials and result.finetune_lr_scale is not None:
        kept["LoRITa"] = (result.finetune_lr_scale, result.finetune_lr_trials)
    for method, block in (result.comparisons or {}).items():
        if block.finetune_lr_trials and block.finetune_lr_scale is not None:
            kept[method] = (block.finetune_lr_scale, block.finetune_lr_trials)
    tried = sorted({trial.lr_scale for _, trials in kept.values() for trial in trials})
    if len(tried) < 2:
        return ""
    choices = ", ".join(f"{method} {scale:g}x" for method, (scale, _) in kept.items())
    return (
        "  fine-tuning rate (x the training's; the better on the validation split of "
        f"{' and '.join(f'{scale:g}x' for scale in tried)}): {choices}"
    )


def format_comparisons(result: Result) -> str:
    """The comparison table, its notes and the verdict line ("" when none ran)."""
    if not result.comparisons and not result.comparisons_skipped:
        return ""
    rows = comparison_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["comparisons (same data and budget; test split; latency on the CPU):"]
    for row in rows:
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  " + "  ".join(cells).rstrip())
    notes: dict[str, list[str]] = {}  # the same note for several methods is told once
    for method, block in (result.comparisons or {}).items():
        if block.note:
            notes.setdefault(block.note, []).append(method)
    for note, methods in notes.items():
        lines.append(f"  note ({', '.join(methods)}): {note}")
    rates = rate_line(result)
    if rates:
        lines.append(rates)
    for method, reason in (result.comparisons_skipped or {}).items():
        lines.append(f"  {method} did not run: {reason}")
    if result.verdict is not None:
        lines.append(f"verdict: {result.verdict.sentence}")
    return "\n".join(lines)
