"""Low rank and 8-bit together: dense fp32, low-rank fp32 and low-rank int8, measured.

For each case a model is trained briefly with the real pipeline (`run_job` with
compress.quantize int8): the job writes model.int8.onnx and measures the dense
fp32, low-rank fp32 and low-rank int8 ONNX files with onnxruntime on the CPU
(core.int8_stage: test accuracy on the raw test arrays, file size, latency at
batch 1 and 64, same thread count, interleaved rounds). The table is the job's
own `int8` block.

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

from bench.common import command_line, machine_info, write_result
from core.threads import prefer_passive_openmp_wait

LATENCY_THREADS = 1
KEEP_FLOAT_OPTIONS = {"none": None, "first_last": "first_last"}
INPUT_NOTE = (
    "raw input: every ONNX file includes the preprocessing and was fed the dataset's own "
    "values (MNIST / Fashion-MNIST uint8 0..255 as float32, layout NHW), as a user feeds them"
)


def case_spec(arch: str, data: dict[str, Any], factor: int, **train: Any) -> dict[str, Any]:
    """A case's job spec: seed 0, three epochs unless `train` says otherwise, and at most
    one point of accuracy given up by the rank search."""
    return {
        "model": {"arch": arch},
        "data": data,
        "lorita": {"factor": factor},
        "train": {"epochs": 3, "seed": 0, **train},
        "compress": {"max_accuracy_drop": 0.01},
    }


CASES = {
    "fcn-mnist": case_spec("fcn", {"dataset": "mnist", "train_subset": 20_000}, factor=3),
    "resnet20-fashion": case_spec(
        "resnet20", {"dataset": "fashion-mnist", "train_subset": 6_000}, factor=2
    ),
}
QUICK_CASES = {
    "fcn-digits": case_spec(
        "fcn", {"dataset": "digits", "val_fraction": 0.25}, factor=3, epochs=10, weight_decay=1e-3
    ),
}


def run_case(name: str, document: dict[str, Any], work: Path) -> dict[str, Any]:
    from core.data import load_dataset
    from core.export import ONNX_FILE
    from core.int8_stage import raw_splits
    from core.onnx_eval import file_size, onnx_accuracy
    from core.pipeline import SPLIT_SEED, run_job
    from core.quantize import CALIBRATION_METHODS, quantize_int8
    from core.spec import JobSpec

    compress = {**document["compress"], "quantize": "int8"}
    spec = JobSpec.model_validate({**document, "compress": compress})
    out = work / name
    started = time.monotonic()
    result = run_job(spec, out, device="cpu")
    job_s = time.monotonic() - started
    block = result.int8
    # The job's own raw arrays (the dataset read again, split by the job's seeded
    # indices), so the calibration variants are fed exactly what the job's models were.
    ran = JobSpec.model_validate(result.spec)
    splits = load_dataset(
        ran.data.dataset,
        val_fraction=ran.data.val_fraction,
        seed=SPLIT_SEED,
        train_subset=ran.data.train_subset,
    )
    data = raw_splits(ran, splits, split_seed=SPLIT_SEED)

    variants = []
    for method in CALIBRATION_METHODS:
        for keep_label, keep in KEEP_FLOAT_OPTIONS.items():
            path = out / f"int8-{method}-{keep_label}.onnx"
            started = time.monotonic()
            details = quantize_int8(
                out / ONNX_FILE, path, data.calibration, keep_float=keep, calibration=method
            )
            variants.append(
                {
                    "calibration": method,
                    "keep_float": keep_label,
                    "kept_float_nodes": details["kept_float"],
                    "quantize_s": round(time.monotonic() - started, 2),
                    "size_bytes": file_size(path),
                    "val_accuracy": onnx_accuracy(path, *data.val),
                    "test_accuracy": onnx_accuracy(path, *data.test),
                }
            )
    rows = {}
    for label in ("dense_fp32", "lowrank_fp32", "lowrank_int8"):
        model = getattr(block, label)
        rows[label] = {
            "accuracy": model.test_accuracy,
            "val_accuracy": model.val_accuracy,
            "size_bytes": model.file_size_bytes,
            "latency_ms": {"b1": model.latency_ms.batch_1, "b64": model.latency_ms.batch_64},
            "size_ratio_to_dense": round(
                block.dense_fp32.file_size_bytes / model.file_size_bytes, 2
            ),
        }
    return {
        "case": name,
        "spec": result.spec,
        "pipeline_result": {
            "accuracy": result.accuracy.model_dump(),
            "params": result.params.model_dump(),
            "ranks": result.ranks,
        },
        "job_s": round(job_s, 1),
        "quantize_stage_s": round(result.timings_s.quantize or 0.0, 1),
        "calibration": block.calibration.model_dump(),
        "int8_default": {"calibration": block.calibration.method, "keep_float": block.keep_float},
        "int8_recommended": block.recommended,
        "int8_accuracy_cost_val": block.accuracy_cost,
        "latency_rounds": block.latency_rounds,
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
        "latency": "median ms over the job's interleaved rounds (latency_rounds, at most 30) "
        "after 3 warm-up rounds, onnxruntime CPU, intra_op_num_threads=1",
        "dense_fp32": "the uncompressed model (merged, full rank, dense layers) exported like "
        "model.onnx (raw input, same metadata): the original model's accuracy, size and speed",
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
