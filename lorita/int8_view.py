"""The int8 model in `lorita compress`'s summary (Result.int8, from --quantize int8)."""

from __future__ import annotations

from core.result import OnnxMeasurement, Result

LABELS = {
    "dense_fp32": "dense fp32 (uncompressed)",
    "lowrank_fp32": "low-rank fp32 model.onnx",
    "lowrank_int8": "low-rank int8 model.int8.onnx",
}


def _cells(label: str, model: OnnxMeasurement) -> tuple[str, ...]:
    return (
        label,
        f"{100 * model.test_accuracy:.2f}%",
        f"{model.file_size_bytes / 1024:,.1f} KiB",
        f"{model.latency_ms.batch_1:.3f} ms",
        f"{model.latency_ms.batch_64:.2f} ms",
    )


def int8_lines(result: Result) -> list[str]:
    """A small table of the three ONNX models and what is recommended; [] without int8."""
    block = result.int8
    if block is None:
        return []
    rows = [("ONNX, onnxruntime CPU", "test acc", "file size", "batch 1", "batch 64")]
    rows += [_cells(LABELS[key], getattr(block, key)) for key in LABELS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    calibration = block.calibration
    lines += [
        f"total: {block.compression_ratio:.1f}x smaller than dense fp32 "
        f"({block.int8_ratio:.1f}x from int8); int8 loses {100 * block.accuracy_cost:.2f} pts "
        f"on val (tolerance {100 * block.tolerance:.2f}) -> recommended: {block.recommended}",
        f"int8 calibrated on {calibration.samples} of {calibration.drawn_from} "
        f"{calibration.split}ing samples; latency: {block.threads} thread, median of "
        f"{block.latency_rounds} interleaved rounds",
    ]
    return lines
