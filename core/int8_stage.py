"""The int8 stage of a job: model.onnx quantized to 8 bits, and measured honestly.

After the float32 artifacts are written, `quantize_job` writes model.int8.onnx
(core.quantize: static QDQ, per-channel int8 weights, int8 activations) with its
activation ranges calibrated on a seeded sample of the TRAINING split, then runs
three ONNX models with onnxruntime on the CPU, the way a user runs them:

- dense_fp32: the uncompressed model (full rank, dense layers), exported like
  model.onnx (raw input, same metadata) but not shipped;
- lowrank_fp32: model.onnx;
- lowrank_int8: model.int8.onnx.

Each is given the raw arrays of the dataset (its own values and layout, as the
input contract says), read again from disk so that what is measured is what a user
feeds, not the pipeline's normalised tensors turned back. Accuracy is measured on
the whole validation and test splits; latency at batch 1 and 64 with the same
thread count in interleaved rounds (core.onnx_eval).

Whether the int8 model is the one to ship is decided on the validation split, like
the ranks: when it costs more than the job's tolerance (compress.max_accuracy_drop)
against model.onnx, the block says so, recommends model.onnx and the Result gets a
warning. The test split only reports.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import LoritaError
from core.export import ONNX_FILE
from core.onnx_eval import file_size, interleaved_latency_ms, make_session, onnx_accuracy
from core.onnx_export import export_onnx, read_onnx_metadata
from core.preprocess import raw_arrays, with_raw_input
from core.quantize import DEFAULT_CALIBRATION, INT8_FILE, quantize_int8
from core.result import (
    Int8Block,
    Int8Calibration,
    OnnxLatency,
    OnnxMeasurement,
    ResultWarning,
)
from core.spec import JobSpec
from core.tolerance import within_drop

CALIBRATION_SAMPLES = 512
CALIBRATION_SEED = 0
CALIBRATION_SPLIT = "train"
# Latency: one thread (as core.onnx_eval and bench/int8.py), at most this many rounds,
# fewer for a big model so the stage stays within about LATENCY_BUDGET_S.
LATENCY_THREADS = 1
MAX_LATENCY_ROUNDS = 30
MIN_LATENCY_ROUNDS = 5
LATENCY_BUDGET_S = 20.0
BATCH_SIZES = (1, 64)
DENSE_REFERENCE = "dense_fp32"
LOWRANK_FP32 = "lowrank_fp32"
LOWRANK_INT8 = "lowrank_int8"
OVER_TOLERANCE = "int8_over_tolerance"


class Int8StageError(LoritaError):
    """The int8 stage could not measure what it must (e.g. the data changed on disk)."""

    kind = "quantize"


@dataclasses.dataclass
class RawSplits:
    """The job's splits as the exported models take them (float32 of the raw values)."""

    calibration: np.ndarray
    drawn_from: int
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    sample_shape: tuple[int, ...]


def with_int8_artifact(artifacts: list[str]) -> list[str]:
    """The artifact list with model.int8.onnx right after model.onnx."""
    names = [name for name in artifacts if name != INT8_FILE]
    at = names.index(ONNX_FILE) + 1 if ONNX_FILE in names else len(names)
    return [*names[:at], INT8_FILE, *names[at:]]


def _float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(dataset: Any) -> np.ndarray:
    return dataset.tensors[1].cpu().numpy()


def _calibration_rows(count: int, samples: int, seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return np.sort(generator.choice(count, min(samples, count), replace=False))


def raw_splits(
    spec: JobSpec,
    splits: Any,
    *,
    split_seed: int,
    data_dir: Path | None = None,
    dataset_file: Path | None = None,
    samples: int = CALIBRATION_SAMPLES,
    seed: int = CALIBRATION_SEED,
) -> RawSplits:
    """Calibration sample (training split only), validation and test in raw form.

    With an input contract the dataset is read again from disk and split with the
    job's own seeded indices (core.data.splits.split_indices): the labels must match
    the job's splits exactly, or the data changed under the job. Without one, the
    models take normalised tensors, and the job's tensors are used as they are.
    """
    if splits.input_contract is None:
        train_x = splits.train.tensors[0].cpu().numpy()
        rows = _calibration_rows(len(train_x), samples, seed)
        return RawSplits(
            calibration=_float32(train_x[rows]),
            drawn_from=len(train_x),
            val=(_float32(splits.val.tensors[0].cpu().numpy()), _labels(splits.val)),
            test=(_float32(splits.test.tensors[0].cpu().numpy()), _labels(splits.test)),
            sample_shape=tuple(train_x.shape[1:]),
        )
    from core.data import read_raw_dataset
    from core.data.splits import split_indices

    raw = read_raw_dataset(spec.data.dataset, data_dir, file=dataset_file)
    train_idx, val_idx = split_indices(
        len(raw.y_train), spec.data.val_fraction, split_seed, spec.data.train_subset
    )

    def part(index: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        subset = dataclasses.replace(raw, x_train=raw.x_train[index], y_train=raw.y_train[index])
        x, y = raw_arrays(subset, "train")
        return _float32(x), y

    train_x, train_y = part(train_idx)
    val = part(val_idx)
    test_x, test_y = raw_arrays(raw, "test")
    test = (_float32(test_x), test_y)
    for name, labels, dataset in (
        ("training", train_y, splits.train),
        ("validation", val[1], splits.val),
        ("test", test[1], splits.test),
    ):
        if not np.array_equal(labels, _labels(dataset)):
            raise Int8StageError(
                f"the {name} split read again for the int8 model differs from the job's; "
                "did the dataset change on disk during the job?"
            )
    rows = _calibration_rows(len(train_x), samples, seed)
    return RawSplits(
        calibration=train_x[rows],
        drawn_from=len(train_x),
        val=val,
        test=test,
        sample_shape=tuple(splits.input_contract.shape),
    )


def _latency_rounds(models: dict[str, Path], batch: np.ndarray) -> int:
    """As many rounds as fit in LATENCY_BUDGET_S (one round runs every model at every
    batch size), between MIN_LATENCY_ROUNDS and MAX_LATENCY_ROUNDS."""
    per_round = 0.0
    for path in models.values():
        session = make_session(path, LATENCY_THREADS)
        name = session.get_inputs()[0].name
        session.run(None, {name: batch})  # warm-up
        started = time.perf_counter()
        session.run(None, {name: batch})
        # Batch 1 costs at most about as much as batch 64.
        per_round += 2 * (time.perf_counter() - started)
    if per_round <= 0:
        return MAX_LATENCY_ROUNDS
    return int(max(MIN_LATENCY_ROUNDS, min(MAX_LATENCY_ROUNDS, LATENCY_BUDGET_S // per_round)))


def _measure(
    path: Path, data: RawSplits, latency: dict[str, float], file: str | None, threads: int
) -> OnnxMeasurement:
    return OnnxMeasurement(
        file=file,
        test_accuracy=onnx_accuracy(path, *data.test, threads=threads),
        val_accuracy=onnx_accuracy(path, *data.val, threads=threads),
        file_size_bytes=file_size(path),
        latency_ms=OnnxLatency(batch_1=latency["b1"], batch_64=latency["b64"]),
    )


def quantize_job(
    spec: JobSpec,
    splits: Any,
    out_dir: Path,
    dense_model: nn.Module,
    *,
    split_seed: int,
    data_dir: Path | None = None,
    dataset_file: Path | None = None,
    on_stage: Callable[[str], None] = lambda message: None,
) -> Int8Block:
    """Write out_dir/model.int8.onnx from out_dir/model.onnx and measure the three models.

    `dense_model`: the uncompressed (merged, full-rank) network, taking normalised
    tensors like the one in model.onnx; it is exported to a scratch folder only.
    """
    out_dir = Path(out_dir)
    lowrank_path, int8_path = out_dir / ONNX_FILE, out_dir / INT8_FILE
    keep = spec.compress.keep_float
    on_stage("reading the training split for calibration")
    data = raw_splits(
        spec, splits, split_seed=split_seed, data_dir=data_dir, dataset_file=dataset_file
    )
    on_stage(f"calibrating on {len(data.calibration)} training samples, writing {INT8_FILE}")
    details = quantize_int8(
        lowrank_path,
        int8_path,
        data.calibration,
        keep_float=None if keep == "none" else keep,
        calibration=DEFAULT_CALIBRATION,
    )
    threads = max(1, torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="lorita-dense-onnx-") as scratch:
        dense_path = Path(scratch) / "dense.onnx"
        on_stage("exporting the uncompressed model for reference")
        export_onnx(
            with_raw_input(dense_model.to("cpu").eval(), splits.input_contract),
            data.sample_shape,
            dense_path,
            # The same metadata as model.onnx, so the sizes compare like with like.
            metadata=read_onnx_metadata(lowrank_path),
        )
        models = {DENSE_REFERENCE: dense_path, LOWRANK_FP32: lowrank_path, LOWRANK_INT8: int8_path}
        on_stage("timing the dense, low-rank and int8 models on the CPU")
        rounds = _latency_rounds(models, data.test[0][: max(BATCH_SIZES)])
        latency = interleaved_latency_ms(
            models,
            data.sample_shape,
            batch_sizes=BATCH_SIZES,
            threads=LATENCY_THREADS,
            rounds=rounds,
        )
        on_stage("measuring accuracy with onnxruntime")
        measured = {
            DENSE_REFERENCE: _measure(dense_path, data, latency[DENSE_REFERENCE], None, threads),
            LOWRANK_FP32: _measure(lowrank_path, data, latency[LOWRANK_FP32], ONNX_FILE, threads),
            LOWRANK_INT8: _measure(int8_path, data, latency[LOWRANK_INT8], INT8_FILE, threads),
        }
    fp32, int8 = measured[LOWRANK_FP32], measured[LOWRANK_INT8]
    tolerance = spec.compress.max_accuracy_drop
    cost = fp32.val_accuracy - int8.val_accuracy
    within = within_drop(cost, tolerance)
    return Int8Block(
        file=INT8_FILE,
        format=str(details["format"]),
        weights=str(details["weights"]),
        activations=str(details["activations"]),
        keep_float=keep,
        kept_float=list(details["kept_float"]),
        calibration=Int8Calibration(
            split=CALIBRATION_SPLIT,
            samples=int(details["calibration_samples"]),
            drawn_from=data.drawn_from,
            method=str(details["calibration"]),
            seed=CALIBRATION_SEED,
        ),
        dense_fp32=measured[DENSE_REFERENCE],
        lowrank_fp32=fp32,
        lowrank_int8=int8,
        compression_ratio=measured[DENSE_REFERENCE].file_size_bytes / int8.file_size_bytes,
        int8_ratio=fp32.file_size_bytes / int8.file_size_bytes,
        accuracy_cost=cost,
        test_accuracy_cost=fp32.test_accuracy - int8.test_accuracy,
        tolerance=tolerance,
        within_tolerance=within,
        recommended=INT8_FILE if within else ONNX_FILE,
        threads=LATENCY_THREADS,
        latency_rounds=rounds,
    )


def int8_warnings(block: Int8Block | None) -> list[ResultWarning]:
    """A warning when the int8 model costs more than the tolerance (model.onnx is kept)."""
    if block is None or block.within_tolerance:
        return []
    advice = (
        f"use {ONNX_FILE} (float32), the recommended file; or keep the first and last "
        "layers in float (compress.keep_float first_last) and compare again"
    )
    if block.keep_float != "none":
        advice = f"use {ONNX_FILE} (float32), the recommended file"
    return [
        ResultWarning(
            kind=OVER_TOLERANCE,
            message=(
                f"{INT8_FILE} reaches {100 * block.lowrank_int8.val_accuracy:.2f}% on the "
                f"validation split, {100 * block.accuracy_cost:.2f} points below {ONNX_FILE} "
                f"({100 * block.lowrank_fp32.val_accuracy:.2f}%): more than the tolerance of "
                f"{100 * block.tolerance:.2f} points"
            ),
            advice=advice,
            run="lorita",
        )
    ]
