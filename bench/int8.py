"""Low rank and 8-bit together: dense fp32, low-rank fp32 and low-rank int8, measured.

For each case a model is trained briefly with the real pipeline (`run_job`), its
low-rank `model.onnx` is quantized with core.quantize, and all three ONNX files
are measured with onnxruntime on the CPU: test accuracy, file size, and latency
at batch 1 and 64 (same thread count, interleaved rounds).

The calibration settings are compared too (MinMax / Percentile / Entropy, with
and without the first and last layers kept in float). They are judged on the
validation split, which is what a default may be chosen on; test accuracies are
listed beside them for the record only.

    python -m bench.int8            # FCN on MNIST, ResNet-20 on Fashion-MNIST
    python -m bench.int8 --quick    # FCN on the 8x8 digits only (a smoke run)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import command_line, machine_info, write_result
from core.threads import prefer_passive_openmp_wait

CALIBRATION_SAMPLES = 512
LATENCY_THREADS = 1
KEEP_FLOAT_OPTIONS = {"none": None, "first_last": "first_last"}
# The variant measured in the main table: quantize_int8's default (every layer int8).
DEFAULT_KEEP = "none"
INPUT_NOTE = (
    "model.onnx does not normalise its input yet: every ONNX file was fed the arrays "
    "normalised as core.data does (per-channel mean/std of the training split)"
)

CASES = {
    "fcn-mnist": {
        "model": {"arch": "fcn"},
        "data": {"dataset": "mnist", "train_subset": 20_000},
        "lorita": {"factor": 3},
        "train": {"epochs": 3, "seed": 0},
        "compress": {"max_accuracy_drop": 0.01},
    },
    "resnet20-fashion": {
        "model": {"arch": "resnet20"},
        "data": {"dataset": "fashion-mnist", "train_subset": 6_000},
        "lorita": {"factor": 2},
        "train": {"epochs": 3, "seed": 0},
        "compress": {"max_accuracy_drop": 0.01},
    },
}
QUICK_CASES = {
    "fcn-digits": {
        "model": {"arch": "fcn"},
        "data": {"dataset": "digits", "val_fraction": 0.25},
        "lorita": {"factor": 3},
        "train": {"epochs": 10, "weight_decay": 1e-3, "seed": 0},
        "compress": {"max_accuracy_drop": 0.01},
    },
}


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    inputs, labels = dataset.tensors
    return inputs.numpy().astype(np.float32), labels.numpy()


def _calibration_sample(train_inputs: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded random sample of the training split (never validation or test)."""
    generator = np.random.default_rng(seed)
    count = min(CALIBRATION_SAMPLES, len(train_inputs))
    return train_inputs[generator.choice(len(train_inputs), count, replace=False)]


def run_case(name: str, document: dict[str, Any], work: Path) -> dict[str, Any]:
    from core.data import load_dataset
    from core.export import ONNX_FILE, export_onnx, load_dense
    from core.onnx_eval import file_size, interleaved_latency_ms, onnx_accuracy
    from core.pipeline import SPLIT_SEED, run_job
    from core.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION, quantize_int8
    from core.spec import JobSpec

    spec = JobSpec.model_validate(document)
    out = work / name
    started = time.monotonic()
    result = run_job(spec, out, device="cpu")
    # The pipeline returns the typed Result; the bench reads it as its JSON document.
    result = result.model_dump(mode="json") if hasattr(result, "model_dump") else result
    train_s = time.monotonic() - started
    splits = load_dataset(
        spec.data.dataset,
        val_fraction=result["spec"]["data"]["val_fraction"],
        seed=SPLIT_SEED,
        train_subset=spec.data.train_subset,
    )
    train_x, _ = _arrays(splits.train)
    val_x, val_y = _arrays(splits.val)
    test_x, test_y = _arrays(splits.test)
    input_shape = tuple(test_x.shape[1:])
    calibration = _calibration_sample(train_x)

    lowrank_path = out / ONNX_FILE
    dense_path = out / "dense.onnx"
    export_onnx(load_dense(out), input_shape, dense_path)

    variants = []
    for method in CALIBRATION_METHODS:
        for keep_label, keep in KEEP_FLOAT_OPTIONS.items():
            path = out / f"int8-{method}-{keep_label}.onnx"
            started = time.monotonic()
            details = quantize_int8(
                lowrank_path, path, calibration, keep_float=keep, calibration=method
            )
            variants.append(
                {
                    "calibration": method,
                    "keep_float": keep_label,
                    "kept_float_nodes": details["kept_float"],
                    "quantize_s": round(time.monotonic() - started, 2),
                    "size_bytes": file_size(path),
                    "val_accuracy": onnx_accuracy(path, val_x, val_y),
                    "test_accuracy": onnx_accuracy(path, test_x, test_y),
                }
            )
    default_path = out / f"int8-{DEFAULT_CALIBRATION}-{DEFAULT_KEEP}.onnx"
    models = {"dense_fp32": dense_path, "lowrank_fp32": lowrank_path, "lowrank_int8": default_path}
    latency = interleaved_latency_ms(models, input_shape, threads=LATENCY_THREADS)
    rows = {}
    for label, path in models.items():
        rows[label] = {
            "accuracy": onnx_accuracy(path, test_x, test_y),
            "val_accuracy": onnx_accuracy(path, val_x, val_y),
            "size_bytes": file_size(path),
            "latency_ms": latency[label],
        }
    dense_size = rows["dense_fp32"]["size_bytes"]
    for row in rows.values():
        row["size_ratio_to_dense"] = round(dense_size / row["size_bytes"], 2)
    return {
        "case": name,
        "spec": result["spec"],
        "pipeline_result": {
            "accuracy": result["accuracy"],
            "params": result["params"],
            "ranks": result["ranks"],
        },
        "train_and_compress_s": round(train_s, 1),
        "calibration_samples": len(calibration),
        "int8_default": {"calibration": DEFAULT_CALIBRATION, "keep_float": DEFAULT_KEEP},
        "models": rows,
        "calibration_variants": variants,
    }


def main(argv: list[str] | None = None) -> None:
    prefer_passive_openmp_wait()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="FCN on the 8x8 digits only")
    parser.add_argument("--only", choices=sorted({**CASES, **QUICK_CASES}), help="one case")
    parser.add_argument("--work-dir", type=Path, help="keep the trained models here")
    args = parser.parse_args(argv)
    cases = QUICK_CASES if args.quick else CASES
    if args.only:
        cases = {args.only: {**CASES, **QUICK_CASES}[args.only]}
    with tempfile.TemporaryDirectory(prefix="lorita-int8-bench-") as scratch:
        work = args.work_dir or Path(scratch)
        results = [run_case(name, document, work) for name, document in cases.items()]
    payload = {
        "benchmark": "int8",
        "command": command_line(),
        "machine": {**machine_info("cpu"), "onnxruntime_threads": LATENCY_THREADS},
        "input": INPUT_NOTE,
        "latency": "median ms over 30 interleaved rounds after 3 warm-up rounds, onnxruntime "
        "CPU, intra_op_num_threads=1",
        "dense_fp32": "model.safetensors (truncated weights in the original dense structure) "
        "exported with core.export.export_onnx: the dense model's size and speed",
        "cases": results,
    }
    name = "int8_quick" if args.quick else "int8"
    print(write_result(name, payload))
    for case in results:
        print(case["case"])
        for label, row in case["models"].items():
            latency = row["latency_ms"]
            print(
                f"  {label:13s} acc {row['accuracy']:.4f}  {row['size_bytes'] / 1024:8.1f} KiB  "
                f"b1 {latency['b1']:.3f} ms  b64 {latency['b64']:.2f} ms"
            )
        for variant in case["calibration_variants"]:
            print(
                f"  {variant['calibration']:10s} keep={variant['keep_float']:10s} "
                f"val {variant['val_accuracy']:.4f} test {variant['test_accuracy']:.4f}"
            )


if __name__ == "__main__":
    main()
