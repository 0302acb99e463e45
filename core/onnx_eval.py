"""Measuring ONNX files with onnxruntime: accuracy, size and CPU latency.

Exported models are judged the way a user runs them, with onnxruntime on the CPU,
so a float and an int8 file are compared on the same footing. Latencies of several
models are timed in interleaved rounds (a, b, c, a, b, c, ...) with a fixed thread
count: a burst of load from other processes then slows every model alike instead
of whichever happened to be timed at that moment.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

DEFAULT_THREADS = 1
DEFAULT_BATCH_SIZES = (1, 64)


def make_session(path: str | Path, threads: int = DEFAULT_THREADS):
    """A CPU inference session with a fixed number of intra- and inter-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def predict_logits(
    path_or_session, inputs: np.ndarray, batch_size: int = 256, threads: int = DEFAULT_THREADS
) -> np.ndarray:
    """The model's outputs for `inputs` (N, ...), computed `batch_size` at a time."""
    session = (
        make_session(path_or_session, threads)
        if isinstance(path_or_session, (str, Path))
        else path_or_session
    )
    name = session.get_inputs()[0].name
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    outputs = [
        session.run(None, {name: inputs[start : start + batch_size]})[0]
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(outputs, axis=0)


def onnx_accuracy(
    path: str | Path,
    inputs: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 256,
    threads: int = DEFAULT_THREADS,
) -> float:
    """Share of `inputs` whose highest-scoring class is the label."""
    if len(inputs) == 0 or len(inputs) != len(labels):
        raise ValueError(f"need as many labels as inputs, got {len(inputs)} and {len(labels)}")
    logits = predict_logits(path, inputs, batch_size, threads)
    return float(np.mean(logits.argmax(axis=1) == np.asarray(labels)))


def file_size(path: str | Path) -> int:
    return Path(path).stat().st_size


def _time_once(session, name: str, batch: np.ndarray) -> float:
    start = time.perf_counter()
    session.run(None, {name: batch})
    return time.perf_counter() - start


def interleaved_latency_ms(
    models: Mapping[str, str | Path],
    input_shape: Sequence[int],
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    threads: int = DEFAULT_THREADS,
    rounds: int = 30,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{model: {"b1": median ms, "b64": ...}} for each batch size, timed in interleaved rounds.

    `input_shape` is one sample's shape (C, H, W); every model gets the same random
    batch. Each round runs every model once per batch size, in a rotating order, so
    no model is always first after another's cache-warming run.
    """
    sessions = {label: make_session(path, threads) for label, path in models.items()}
    names = {label: session.get_inputs()[0].name for label, session in sessions.items()}
    generator = np.random.default_rng(seed)
    batches = {
        size: generator.standard_normal((size, *input_shape)).astype(np.float32)
        for size in batch_sizes
    }
    labels = list(sessions)
    times: dict[tuple[str, int], list[float]] = {(m, b): [] for m in labels for b in batch_sizes}
    for round_index in range(warmup + rounds):
        shift = round_index % len(labels)
        for size in batch_sizes:
            for label in labels[shift:] + labels[:shift]:
                elapsed = _time_once(sessions[label], names[label], batches[size])
                if round_index >= warmup:
                    times[(label, size)].append(elapsed)
    return {
        label: {f"b{size}": _median_ms(times[(label, size)]) for size in batch_sizes}
        for label in labels
    }


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000.0
