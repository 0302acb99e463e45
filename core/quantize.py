"""Calibrated static INT8 quantization of an exported ONNX model.

The float model is rewritten in onnxruntime's QDQ format: every weight layer's
weights are stored as int8 (one scale per output channel) and its activations
are quantized with ranges calibrated on a sample the caller gives. The function
only ever sees that sample; the caller draws it from the training split, so the
test split stays unseen until the int8 model is measured.

Layers that quantize badly can stay in float (`keep_float`, e.g. FIRST_LAST: the
first layer sees the raw input, the last writes the logits). By default every layer
is quantized: on the FCN (MNIST) and ResNet-20 (Fashion-MNIST) of bench/int8.py the
fully quantized model was as accurate as with first/last kept float (within 0.4
points on validation) and smaller (FCN 103 KB instead of 163 KB).

Weights use 7 of the 8 bits ([-64, 64], onnxruntime's `reduce_range`). On an x86
CPU without VNNI (e.g. AVX2 only), onnxruntime's int8 kernels add pairs of 8-bit
products in 16 bits, which saturates with full-range weights: a user's default
session then runs the file less accurately than the arithmetic it encodes. The test
FCN on digits lost 0.6 to 8.6 points over ten seeds that way (0.3 at most when the
same files are computed exactly); with 7-bit weights, at most 0.6 either way.

The int8 file carries every metadata entry of the float model (its input
contract) plus a `quantization` entry saying what was done.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx

from core.errors import LoritaError

INT8_FILE = "model.int8.onnx"
QUANTIZATION_KEY = "quantization"
FIRST_LAST = "first_last"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
# MinMax, Percentile and Entropy were level (within 0.2 points on validation) on the
# FCN and ResNet-20 of bench/int8.py; MinMax is the cheapest and needs no histograms.
DEFAULT_CALIBRATION = "minmax"
DEFAULT_CALIBRATION_BATCH = 64
# Weight range: 7 bits, so that the file is as accurate on a CPU without VNNI (see above).
REDUCE_WEIGHT_RANGE = True
# Operators whose second input is a weight matrix / kernel: the layers of a model.
WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


class QuantizeError(LoritaError):
    """The model could not be quantized as asked (e.g. an unknown layer to keep float)."""

    kind = "quantize"


class ArrayCalibrationReader:
    """Feeds a fixed sample to onnxruntime's calibrator, in batches, exactly once.

    onnxruntime's `CalibrationDataReader` protocol: `get_next()` returns one input
    feed or None when the sample is exhausted; `rewind()` starts over.
    """

    def __init__(
        self, input_name: str, inputs: np.ndarray, batch_size: int = DEFAULT_CALIBRATION_BATCH
    ) -> None:
        if inputs.ndim < 2 or len(inputs) == 0:
            raise QuantizeError("calibration needs a non-empty batch of inputs (N, ...)")
        if batch_size < 1:
            raise QuantizeError(f"calibration batch size must be positive, got {batch_size}")
        self.input_name = input_name
        self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.batch_size = batch_size
        self._batches: Iterator[np.ndarray] = self._iterate()

    def _iterate(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.inputs), self.batch_size):
            yield self.inputs[start : start + self.batch_size]

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._batches = self._iterate()

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (feed := self.get_next()) is not None:
            yield feed


def _calibration_reader(input_name: str, inputs: np.ndarray, batch_size: int):
    """An ArrayCalibrationReader registered as onnxruntime's reader type."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(ArrayCalibrationReader, CalibrationDataReader):
        pass

    return Reader(input_name, inputs, batch_size)


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if name not in methods:
        raise QuantizeError(
            f"unknown calibration method {name!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
        )
    return methods[name]


def node_scope(node_name: str) -> str:
    """The PyTorch module a node came from, from the exporter's scoped node name.

    The exporter names nodes by their module path: "/layers/layers.0/layers.0.0/MatMul"
    for `layers.0.0`, "/layer1/layer1.0/conv1/conv1.0/Conv" for `layer1.0.conv1.0`. A
    segment that extends the previous one ("layers" -> "layers.0") is a Sequential's
    child; any other segment is a named child of the module so far.
    """
    segments = [part for part in node_name.split("/") if part][:-1]
    scope, previous = "", ""
    for segment in segments:
        if previous and segment.startswith(previous + "."):
            scope += segment[len(previous) :]
        else:
            scope = f"{scope}.{segment}" if scope else segment
        previous = segment
    return scope


def weight_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes that multiply by a stored weight, in graph (topological) order."""
    initializers = {init.name for init in model.graph.initializer}
    return [
        node
        for node in model.graph.node
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in initializers
    ]


def _layer_of(scope: str, scopes: set[str]) -> str:
    """A low-rank layer `L` is exported as two nodes `L.0`, `L.1`; they form one layer."""
    parent, _, index = scope.rpartition(".")
    if parent and index in ("0", "1") and {f"{parent}.0", f"{parent}.1"} <= scopes:
        return parent
    return scope


def weight_layers(model: onnx.ModelProto) -> dict[str, list[str]]:
    """{layer name: its weight nodes' names}, in graph order (factor pairs grouped)."""
    nodes = weight_nodes(model)
    scopes = {node_scope(node.name) for node in nodes}
    layers: dict[str, list[str]] = {}
    for node in nodes:
        layers.setdefault(_layer_of(node_scope(node.name), scopes), []).append(node.name)
    return layers


def resolve_keep_float(model: onnx.ModelProto, keep_float: str | Iterable[str] | None) -> list[str]:
    """Node names to leave in float for `keep_float`.

    Accepts FIRST_LAST, or names that are either ONNX node names or PyTorch layer names
    (a layer name covers every node of that module, e.g. both factors of a low-rank
    layer). A name that matches nothing is an error, not silently ignored.
    """
    if keep_float is None:
        return []
    layers = weight_layers(model)
    if isinstance(keep_float, str):
        if keep_float == FIRST_LAST:
            names = list(layers)
            chosen = [names[0], names[-1]] if names else []
            return sorted({node for layer in chosen for node in layers[layer]})
        keep_float = [keep_float]
    node_names = {node.name for node in model.graph.node if node.name}
    excluded: set[str] = set()
    for name in keep_float:
        if name in node_names:
            excluded.add(name)
            continue
        matches = [
            node.name
            for node in model.graph.node
            if node.name
            and (node_scope(node.name) == name or node_scope(node.name).startswith(name + "."))
        ]
        if not matches:
            raise QuantizeError(
                f"keep_float names {name!r}, which is neither a node nor a layer of the model; "
                f"its weight layers are {', '.join(layers) or 'none'}"
            )
        excluded.update(matches)
    return sorted(excluded)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer prints progress and logs advice on the root logger;
    neither is for the user of a job (the outcome is reported instead)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _preprocessed(onnx_path: Path, folder: Path) -> Path:
    """The model after onnxruntime's pre-quantization pass (shape inference, fusions).

    Fusing BatchNorm into the preceding layer before quantizing means the fused
    layer is quantized once, instead of quantizing a layer and a normalisation apart.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = folder / "preprocessed.onnx"
    with _quiet():
        quant_pre_process(str(onnx_path), str(target), skip_symbolic_shape=False)
    return target


def quantize_int8(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration_inputs: np.ndarray,
    *,
    keep_float: str | Iterable[str] | None = None,
    per_channel: bool = True,
    calibration: str = DEFAULT_CALIBRATION,
    batch_size: int = DEFAULT_CALIBRATION_BATCH,
    preprocess: bool = True,
    reduce_range: bool = REDUCE_WEIGHT_RANGE,
) -> dict[str, object]:
    """Write a calibrated static INT8 (QDQ) version of `onnx_path` to `out_path`.

    calibration_inputs: float32 (N, C, H, W) drawn from the training split, in the
    form the model takes; every sample is used, `batch_size` at a time.
    keep_float: None (default: quantize every layer), FIRST_LAST, or node / layer names.
    reduce_range: weights in [-64, 64] instead of [-127, 127] (see the module docstring).
    Returns what was done (also stored under the `quantization` metadata key).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    method = _calibration_method(calibration)
    source = onnx.load(str(onnx_path))
    input_name = source.graph.input[0].name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lorita-int8-") as scratch:
        folder = Path(scratch)
        model_path = _preprocessed(onnx_path, folder) if preprocess else onnx_path
        # Names are resolved on the graph that is quantized (pre-processing keeps names).
        excluded = resolve_keep_float(onnx.load(str(model_path)), keep_float)
        temporary = folder / "int8.onnx"
        with _quiet():
            quantize_static(
                str(model_path),
                str(temporary),
                _calibration_reader(input_name, calibration_inputs, batch_size),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=method,
                calibration_providers=["CPUExecutionProvider"],
            )
        quantized = onnx.load(str(temporary))
    details: dict[str, object] = {
        "dtype": "int8",
        "format": "QDQ",
        "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
        "weight_range": "[-64, 64]" if reduce_range else "[-127, 127]",
        "activations": "int8",
        "calibration": calibration,
        "calibration_samples": int(len(calibration_inputs)),
        "kept_float": excluded,
    }
    _copy_metadata(source, quantized, details)
    partial = out_path.with_name(out_path.name + ".tmp")
    onnx.save(quantized, str(partial))
    os.replace(partial, out_path)
    return details


def _copy_metadata(
    source: onnx.ModelProto, target: onnx.ModelProto, details: dict[str, object]
) -> None:
    """Every metadata entry of the float model, then the quantization entry."""
    entries = {entry.key: entry.value for entry in source.metadata_props}
    entries[QUANTIZATION_KEY] = json.dumps(details, sort_keys=True)
    del target.metadata_props[:]
    for key, value in entries.items():
        target.metadata_props.add(key=key, value=value)


def quantization_info(path: str | Path) -> dict[str, object] | None:
    """The `quantization` metadata of an ONNX file, or None for a float model."""
    for entry in onnx.load(str(path), load_external_data=False).metadata_props:
        if entry.key == QUANTIZATION_KEY:
            return json.loads(entry.value)
    return None
