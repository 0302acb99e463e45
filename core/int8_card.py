"""The int8 model's part of MODEL_CARD.md (written from the Result's `int8` block)."""

from __future__ import annotations

from core.quantize import INT8_FILE
from core.result import Int8Block, OnnxMeasurement, Result

INT8_FILE_NOTE = (
    "the compressed model in 8 bits for onnxruntime (int8 weights and activations, QDQ "
    "format); the same input and metadata as model.onnx"
)


def _row(label: str, model: OnnxMeasurement) -> str:
    latency = model.latency_ms
    return (
        f"| {label} | {100 * model.test_accuracy:.2f}% | {100 * model.val_accuracy:.2f}% | "
        f"{model.file_size_bytes / 1024:,.1f} KiB | {latency.batch_1:.3f} ms | "
        f"{latency.batch_64:.2f} ms |"
    )


def int8_card_lines(result: Result) -> list[str]:
    """The "8-bit model" section (ending in a blank line), or nothing without int8."""
    block: Int8Block | None = result.int8
    if block is None:
        return []
    calibration = block.calibration
    verdict = (
        f"Within the tolerance ({100 * block.tolerance:.2f} points on the validation split): "
        f"`{INT8_FILE}` is the recommended file."
        if block.within_tolerance
        else f"It costs {100 * block.accuracy_cost:.2f} points on the validation split, more "
        f"than the tolerance of {100 * block.tolerance:.2f}: use `{block.recommended}` "
        "(float32) instead."
    )
    kept = ", ".join(block.kept_float) if block.kept_float else "none"
    return [
        "## 8-bit model",
        "",
        f"`{INT8_FILE}`: {block.weights} weights, {block.activations} activations "
        f"({block.format}); activation ranges calibrated ({calibration.method}) on "
        f"{calibration.samples} samples of the {calibration.split}ing split (never the "
        f"test split). Layers kept in float: {kept}. It takes the same raw input as "
        "`model.onnx`: use the onnxruntime snippet below with this file name.",
        "",
        "Measured with onnxruntime on the CPU "
        f"({block.threads} thread{'s' if block.threads > 1 else ''}, "
        f"median of {block.latency_rounds} interleaved rounds):",
        "",
        "| ONNX model | test | validation | file size | batch 1 | batch 64 |",
        "|---|---|---|---|---|---|",
        _row("dense, float32 (uncompressed, not shipped)", block.dense_fp32),
        _row("low rank, float32 (`model.onnx`)", block.lowrank_fp32),
        _row(f"low rank, int8 (`{INT8_FILE}`)", block.lowrank_int8),
        "",
        f"Total compression: {block.compression_ratio:.1f}× smaller than the dense float32 "
        f"model ({block.int8_ratio:.1f}× from 8 bits alone). {verdict}",
        "",
    ]
