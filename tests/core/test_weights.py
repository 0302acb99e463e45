"""Uploaded weights: the safetensors header is checked against hostile files without
torch, the names and shapes against the architecture, the values when loaded."""

import json
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from core.errors import DataError
from core.models import build_model
from core.models.weights import check_weights_file, expected_state, load_weights
from core.weights import WeightsError, check_shapes, read_header

# The FCN on 8x8 digits: Linear + BatchNorm1d blocks (float weights and an int64 counter).
ARCH, CLASSES, CHANNELS, SIZE = "fcn", 10, 1, 8


def _trained_fcn(num_classes: int = CLASSES) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ARCH, num_classes, CHANNELS, SIZE)
    with torch.no_grad():
        model.train()(torch.randn(8, CHANNELS, SIZE, SIZE))  # BatchNorm statistics move
    return model.eval()


def _save(model: torch.nn.Module, path) -> str:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def _write(path, header, data: bytes = b"", *, length: int | None = None) -> str:
    """A file laid out as safetensors: 8-byte length, header (JSON or raw bytes), data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return str(path)


def _check(path, num_classes: int = CLASSES, arch: str = ARCH) -> None:
    check_weights_file(path, arch, num_classes, CHANNELS, SIZE)


def test_a_saved_state_dict_passes_and_loads_exactly(tmp_path):
    model = _trained_fcn()
    path = _save(model, tmp_path / "fcn.safetensors")
    header = read_header(path)
    assert header.shapes()["layers.0.weight"] == (500, 64)
    assert header.tensors["layers.1.num_batches_tracked"].dtype == "I64"
    assert header.parameter_count == sum(p.numel() for p in model.parameters()) + 2 * 3 * 500
    _check(path)

    fresh = build_model(ARCH, CLASSES, CHANNELS, SIZE).eval()
    load_weights(fresh, path, arch=ARCH)
    x = torch.randn(4, CHANNELS, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_half_precision_weights_load_into_a_float32_model(tmp_path):
    model = _trained_fcn()
    path = _save(model.to(torch.bfloat16), tmp_path / "bf16.safetensors")
    _check(path)
    fresh = load_weights(build_model(ARCH, CLASSES, CHANNELS, SIZE), path, arch=ARCH)
    assert fresh.layers[0].weight.dtype == torch.float32
    assert torch.equal(fresh.layers[0].weight, model.layers[0].weight.float())


def test_wrong_architecture_lists_missing_and_unexpected(tmp_path):
    path = _save(build_model("resnet20", CLASSES, CHANNELS, SIZE), tmp_path / "r.safetensors")
    with pytest.raises(WeightsError) as caught:
        _check(path)
    message = str(caught.value)
    assert message.startswith("the weights do not fit fcn: missing: layers.0.weight (500x64)")
    assert "; unexpected: layer3.0.conv2.weight (64x64x3x3), layer3.1.conv1.weight" in message
    assert message.endswith(" more")
    assert "layers.0.weight" in caught.value.missing
    assert caught.value.unexpected and not caught.value.wrong_shape
    assert caught.value.kind == "weights" and isinstance(caught.value, DataError)


def test_other_class_count_lists_the_mis_shaped_tensors(tmp_path):
    path = _save(_trained_fcn(num_classes=10), tmp_path / "fcn10.safetensors")
    with pytest.raises(WeightsError) as caught:
        _check(path, num_classes=5)
    assert str(caught.value) == (
        "the weights do not fit fcn: wrong shape: layers.9.weight is 10x500, expected "
        "5x500, layers.9.bias is 10, expected 5"
    )
    assert caught.value.wrong_shape["layers.9.bias"] == ((10,), (5,))


def test_a_wrapper_prefix_on_every_name_is_pointed_out(tmp_path):
    state = {f"module.{k}": v for k, v in _trained_fcn().state_dict().items()}
    save_file(state, str(tmp_path / "dp.safetensors"))
    with pytest.raises(WeightsError, match="every name starts with 'module.'"):
        _check(tmp_path / "dp.safetensors")


def test_check_shapes_alone_needs_no_model():
    check_shapes({"a": (2, 3)}, {"a": (2, 3)}, arch="x")
    with pytest.raises(WeightsError, match=r"missing: b \(scalar\); unexpected: c \(1\)"):
        check_shapes({"a": (2, 3), "c": (1,)}, {"a": (2, 3), "b": ()}, arch="x")


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.safetensors"
    _save(_trained_fcn(), path)
    full = path.read_bytes()
    path.write_bytes(full[:-100])
    with pytest.raises(WeightsError, match="file holds only .* the file is truncated"):
        read_header(path)
    path.write_bytes(full[:5])
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_header(path)


def test_header_length_beyond_the_file(tmp_path):
    path = _write(tmp_path / "lie.safetensors", {"a": 1}, length=10_000)
    with pytest.raises(WeightsError, match="claims 10000 bytes but the file has only"):
        read_header(path)


def test_huge_header_is_refused_before_it_is_read(tmp_path):
    path = _write(tmp_path / "huge.safetensors", b"{}", length=1 << 40)
    with pytest.raises(WeightsError, match="more than the limit"):
        read_header(path)


def test_file_over_max_bytes(tmp_path):
    path = _save(_trained_fcn(), tmp_path / "big.safetensors")
    with pytest.raises(WeightsError, match="the limit is 0.1 MB"):
        read_header(path, max_bytes=100_000)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "holds no tensors"),
        (
            b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
            b'"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}',
            "names \\['a'\\] twice",
        ),
        ({"a": {"dtype": "F32", "shape": [1]}}, "exactly dtype, shape and data_offsets"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, "invalid data_offsets"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "needs 8"),
        ({"__metadata__": {"format": 1}, "a": {}}, "__metadata__ must map strings"),
    ],
)
def test_malformed_headers(tmp_path, header, message):
    with pytest.raises(WeightsError, match=message):
        read_header(_write(tmp_path / "bad.safetensors", header, b"\0" * 8))


def test_offsets_beyond_the_file_overlapping_or_leaving_gaps(tmp_path):
    def entry(begin: int) -> dict:
        return {"dtype": "F32", "shape": [1], "data_offsets": [begin, begin + 4]}

    cases = {
        "beyond": ({"a": entry(0), "b": entry(4)}, b"\0" * 4, "ends at byte 8 .* only 4"),
        "overlap": ({"a": entry(0), "b": entry(2)}, b"\0" * 6, "overlaps"),
        "gap": ({"a": entry(0), "b": entry(8)}, b"\0" * 12, "bytes 4..8 belong to no tensor"),
        "tail": ({"a": entry(0)}, b"\0" * 8, "4 bytes after the last tensor"),
    }
    for name, (header, data, message) in cases.items():
        with pytest.raises(WeightsError, match=message):
            read_header(_write(tmp_path / f"{name}.safetensors", header, data))
    read_header(_write(tmp_path / "ok.safetensors", {"a": entry(0), "b": entry(4)}, b"\0" * 8))


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.bool, torch.float8_e4m3fn])
def test_unsupported_dtypes(tmp_path, dtype):
    path = tmp_path / "ints.safetensors"
    save_file({"w": torch.zeros(2, 2).to(dtype)}, str(path))
    with pytest.raises(WeightsError, match="dtype .*; weights must be float16, bfloat16"):
        read_header(path)


def test_an_integer_tensor_where_a_weight_belongs(tmp_path):
    state = _trained_fcn().state_dict()
    state["layers.0.bias"] = state["layers.0.bias"].long()
    save_file(state, str(tmp_path / "int.safetensors"))
    with pytest.raises(WeightsError, match="wrong dtype: layers.0.bias is I64"):
        _check(tmp_path / "int.safetensors")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_values_are_refused_when_loading(tmp_path, value):
    state = _trained_fcn().state_dict()
    state["layers.3.weight"][2, 5] = value
    save_file(state, str(tmp_path / "nan.safetensors"))
    _check(tmp_path / "nan.safetensors")  # the header is fine: values are read on load
    model = build_model(ARCH, CLASSES, CHANNELS, SIZE)
    with pytest.raises(WeightsError, match="layers.3.weight holds 1 NaN or infinite"):
        load_weights(model, tmp_path / "nan.safetensors", arch=ARCH)


def test_expected_state_is_built_without_memory():
    state = expected_state("tv:resnet18", 10, 3, 32)
    assert state["fc.weight"].shape == (10, 512) and state["fc.weight"].is_meta
    assert state["bn1.num_batches_tracked"].dtype == torch.int64


def test_the_header_check_does_not_import_torch(tmp_path):
    path = _save(_trained_fcn(), tmp_path / "fcn.safetensors")
    code = (
        "import sys; from core.weights import read_header; "
        f"assert read_header({path!r}).tensors; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
