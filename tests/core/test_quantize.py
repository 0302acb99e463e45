"""Static INT8 quantization of an exported low-rank model, measured with onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from core.data import load_dataset
from core.lowrank import to_lowrank
from core.models import build_model
from core.onnx_eval import file_size, interleaved_latency_ms, onnx_accuracy
from core.onnx_export import export_onnx
from core.quantize import (
    FIRST_LAST,
    ArrayCalibrationReader,
    QuantizeError,
    node_scope,
    quantization_info,
    quantize_int8,
    weight_layers,
)

CONTRACT = {"input_contract": json.dumps({"layout": "NCHW", "shape": [1, 8, 8]}), "arch": "fcn"}
RANKS = {"layers.0": 24, "layers.3": 16, "layers.6": 8}


@pytest.fixture(scope="module")
def digits():
    """This module's own split (20% held out), not the shared 10% one: the model whose
    quantization these tests measure is trained on the other 80%."""
    return load_dataset("digits", val_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory, digits):
    """A small FCN trained on the digits' training split, low-rank, exported with metadata."""
    torch.manual_seed(0)
    model = build_model("fcn", 10, 1, 8, hidden=(128, 128))
    inputs, labels = digits.train.tensors
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        order = torch.randperm(len(inputs))
        for start in range(0, len(inputs), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    lowrank = to_lowrank(model.eval(), RANKS).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(lowrank, (1, 8, 8), path)
    graph = onnx.load(str(path))
    for key, value in CONTRACT.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return path


def _arrays(dataset):
    inputs, labels = dataset.tensors
    return inputs.numpy(), labels.numpy()


def _float_weight_nodes(path) -> set[str]:
    """Weight nodes whose weight is a float initializer (not dequantized from int8)."""
    model = onnx.load(str(path))
    initializers = {init.name: init for init in model.graph.initializer}
    return {
        node.name
        for node in model.graph.node
        if node.op_type in ("Gemm", "MatMul", "Conv")
        and node.input[1] in initializers
        and numpy_helper.to_array(initializers[node.input[1]]).dtype == np.float32
    }


def _float_bytes(path) -> int:
    model = onnx.load(str(path))
    arrays = [numpy_helper.to_array(init) for init in model.graph.initializer]
    return sum(a.nbytes for a in arrays if a.dtype == np.float32)


def test_int8_model_is_smaller_quantized_and_about_as_accurate(tmp_path, float_onnx, digits):
    train_x, _ = _arrays(digits.train)
    test_x, test_y = _arrays(digits.test)
    out = tmp_path / "model.int8.onnx"
    details = quantize_int8(float_onnx, out, train_x[:300], keep_float=None)

    assert details["kept_float"] == []
    model = onnx.load(str(out))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # No weight layer computes from a float weight any more; the weights are int8.
    assert _float_weight_nodes(out) == set()
    int8_weights = [
        init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8
    ]
    assert sum(numpy_helper.to_array(w).size for w in int8_weights) > 10_000
    # 7-bit weights: a CPU without VNNI sums pairs of int8 products in 16 bits, and
    # 255 * 64 * 2 still fits (full-range weights saturate and cost points there).
    assert details["weight_range"] == "[-64, 64]"
    stored = {init.name: numpy_helper.to_array(init) for init in int8_weights}
    dequantized = [node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear"]
    weights = [stored[name] for name in dequantized if name in stored]
    assert weights and max(np.abs(w.astype(int)).max() for w in weights) <= 64
    # Weights go from 4 bytes to 1; scales, zero points, int32 biases and graph overhead
    # are what keeps a model this small from the full 4x.
    assert _float_bytes(out) < 0.3 * _float_bytes(float_onnx)
    assert file_size(out) < 0.7 * file_size(float_onnx)

    float_accuracy = onnx_accuracy(float_onnx, test_x, test_y)
    int8_accuracy = onnx_accuracy(out, test_x, test_y)
    assert float_accuracy > 0.9
    assert abs(float_accuracy - int8_accuracy) <= 0.03


def test_metadata_is_copied_and_marked_int8(tmp_path, float_onnx, digits):
    out = tmp_path / "model.int8.onnx"
    quantize_int8(float_onnx, out, _arrays(digits.train)[0][:128])
    entries = {entry.key: entry.value for entry in onnx.load(str(out)).metadata_props}
    source = {entry.key: entry.value for entry in onnx.load(str(float_onnx)).metadata_props}
    assert set(CONTRACT) <= set(source)
    for key, value in source.items():
        assert entries[key] == value
    info = quantization_info(out)
    assert info["dtype"] == "int8" and info["format"] == "QDQ"
    assert info["calibration_samples"] == 128
    assert quantization_info(float_onnx) is None


def test_reader_yields_exactly_the_given_sample():
    sample = np.random.default_rng(0).standard_normal((150, 1, 8, 8)).astype(np.float32)
    reader = ArrayCalibrationReader("input", sample, batch_size=64)
    feeds = list(reader)
    assert [feed["input"].shape[0] for feed in feeds] == [64, 64, 22]
    assert all(set(feed) == {"input"} for feed in feeds)
    np.testing.assert_array_equal(np.concatenate([f["input"] for f in feeds]), sample)
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["input"], sample[:64])


def test_input_range_is_calibrated_on_the_given_sample_only(tmp_path, float_onnx, digits):
    """The input's quantization scale follows the sample: MinMax over it, nothing else."""
    sample = _arrays(digits.train)[0][:200]
    scales = []
    for factor in (1.0, 4.0):
        out = tmp_path / f"int8-{factor}.onnx"
        quantize_int8(float_onnx, out, sample * factor, keep_float=None, calibration="minmax")
        model = onnx.load(str(out))
        initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        # The FCN flattens its input first; flattening does not change the values.
        flattened = {"input"} | {
            n.output[0]
            for n in model.graph.node
            if n.op_type == "Flatten" and n.input[0] == "input"
        }
        quantize_input = [
            n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in flattened
        ][0]
        scales.append(float(initializers[quantize_input.input[1]]))
    expected = (max(sample.max(), 0.0) - min(sample.min(), 0.0)) / 255.0
    assert scales[0] == pytest.approx(expected, rel=1e-3)
    assert scales[1] == pytest.approx(4.0 * expected, rel=1e-3)


def test_keep_float_by_layer_name_leaves_that_layer_float(tmp_path, float_onnx, digits):
    out = tmp_path / "model.int8.onnx"
    details = quantize_int8(
        float_onnx, out, _arrays(digits.train)[0][:128], keep_float=["layers.3"]
    )
    layers = weight_layers(onnx.load(str(float_onnx)))
    assert set(layers["layers.3"]) <= set(details["kept_float"])
    assert _float_weight_nodes(out) == set(layers["layers.3"])


def test_first_last_keeps_the_first_and_last_layers_float(tmp_path, float_onnx, digits):
    out = tmp_path / "model.int8.onnx"
    quantize_int8(float_onnx, out, _arrays(digits.train)[0][:128], keep_float=FIRST_LAST)
    layers = weight_layers(onnx.load(str(float_onnx)))
    assert list(layers) == ["layers.0", "layers.3", "layers.6"]
    # A low-rank layer is two nodes; both of the first layer's factors stay float.
    assert len(layers["layers.0"]) == 2
    assert _float_weight_nodes(out) == set(layers["layers.0"]) | set(layers["layers.6"])


def test_unknown_keep_float_name_is_an_error(tmp_path, float_onnx, digits):
    with pytest.raises(QuantizeError, match="layers.3"):
        quantize_int8(
            float_onnx, tmp_path / "x.onnx", _arrays(digits.train)[0][:64], keep_float=["nope"]
        )
    with pytest.raises(QuantizeError, match="calibration"):
        quantize_int8(
            float_onnx, tmp_path / "x.onnx", _arrays(digits.train)[0][:64], calibration="mean"
        )


@pytest.mark.parametrize(
    ("node", "scope"),
    [
        ("/layers/layers.0/layers.0.1/Gemm", "layers.0.1"),
        ("/layer1/layer1.0/conv1/conv1.0/Conv", "layer1.0.conv1.0"),
        ("/fc/fc.1/Gemm", "fc.1"),
        ("/Flatten", ""),
    ],
)
def test_node_scope_recovers_the_module_path(node, scope):
    assert node_scope(node) == scope


def test_interleaved_latency_reports_every_model_and_batch(tmp_path, float_onnx, digits):
    out = tmp_path / "model.int8.onnx"
    quantize_int8(float_onnx, out, _arrays(digits.train)[0][:64])
    latency = interleaved_latency_ms(
        {"float": float_onnx, "int8": out}, (1, 8, 8), rounds=3, warmup=1
    )
    assert set(latency) == {"float", "int8"}
    for times in latency.values():
        assert set(times) == {"b1", "b64"}
        assert all(0.0 < value < 1000.0 for value in times.values())
