"""Uploaded model weights (.safetensors): checked before anything trusts them.

A .safetensors file is an 8-byte little-endian header length, a JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then
one flat data buffer. Nothing in it is code, and nothing here unpickles anything.

`read_header` checks the file against a hostile writer without reading any tensor:
bounded file and header sizes, JSON without duplicate names, only the dtypes a
model's state dict holds (float16/bfloat16/float32/float64, and int64 for counters
such as BatchNorm's num_batches_tracked), every tensor's byte length equal to its
shape times its dtype's size, and the offsets tiling the data buffer exactly (no
overlap, no gap, nothing out of range or left over; the safetensors library refuses
the same files when it opens them). `check_shapes` compares the names and shapes
with what an architecture expects and lists what differs.

This module is torch-free, so the API checks an upload's header in its own process.
The shapes an architecture expects come from building the model, which needs
torch: core.models.weights builds it on the meta device (no memory) in the worker
or the CLI, and also loads the tensors, checking each for NaN/inf.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.data.upload_file import checked_size
from core.errors import DataError

SUFFIX = ".safetensors"
DEFAULT_MAX_BYTES = 2 << 30  # 2 GiB: any classification model this service trains
# The header lists names, dtypes and shapes only: ~100 bytes a tensor.
DEFAULT_MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 100_000
MAX_NAME_LENGTH = 1_000
MAX_DIMS = 8
# Bytes per element of the dtypes a state dict may hold.
DTYPE_SIZES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8}
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
# How many names of each kind an error message lists before it only counts them.
LISTED = 12
HINT = "save it with safetensors.torch.save_file(model.state_dict(), path)"

Shape = tuple[int, ...]


class WeightsError(DataError):
    """The weights file is malformed, unsafe, or does not fit the architecture.

    `missing`, `unexpected` and `wrong_shape` hold the details of a mismatch
    ({name: shape}, and {name: (found, expected)}) for clients that show them.
    """

    kind = "weights"

    def __init__(
        self,
        message: str,
        *,
        missing: Mapping[str, Shape] | None = None,
        unexpected: Mapping[str, Shape] | None = None,
        wrong_shape: Mapping[str, tuple[Shape, Shape]] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = dict(missing or {})
        self.unexpected = dict(unexpected or {})
        self.wrong_shape = dict(wrong_shape or {})


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it; `begin`/`end` index the data buffer."""

    dtype: str
    shape: Shape
    begin: int
    end: int

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


@dataclass(frozen=True)
class WeightsHeader:
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    file_bytes: int

    def shapes(self) -> dict[str, Shape]:
        return {name: entry.shape for name, entry in self.tensors.items()}

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(entry.shape) for entry in self.tensors.values() if entry.is_float)


def format_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def read_header(
    path: Path | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> WeightsHeader:
    """The checked header of a .safetensors file; WeightsError saying what is wrong."""
    path = Path(path)
    size = checked_size(
        path,
        max_bytes,
        label=f"weights file {path.name}",
        missing=WeightsError,
        too_large=WeightsError,
    )
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightsError(f"{path.name} is not a safetensors file (too short); {HINT}")
        (header_bytes,) = struct.unpack("<Q", prefix)
        if header_bytes > max_header_bytes:
            raise WeightsError(
                f"{path.name}: the safetensors header claims {header_bytes} bytes, more "
                f"than the limit of {max_header_bytes}; the file is not a model's weights"
            )
        if header_bytes > size - 8:
            raise WeightsError(
                f"{path.name}: the safetensors header claims {header_bytes} bytes but the "
                f"file has only {size - 8} after the length; the file is truncated or "
                "not safetensors"
            )
        raw = handle.read(header_bytes)
    header = _parse_json(path.name, raw)
    metadata = _metadata(path.name, header.pop("__metadata__", None))
    tensors = _entries(path.name, header)
    _check_layout(path.name, tensors, buffer_bytes=size - 8 - header_bytes)
    return WeightsHeader(tensors, metadata, size)


def _parse_json(file_name: str, raw: bytes) -> dict:
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        result = dict(pairs)
        if len(result) != len(pairs):
            names = [name for name, _ in pairs]
            twice = sorted({name for name in names if names.count(name) > 1})
            raise WeightsError(f"{file_name}: the header names {twice[:LISTED]} twice")
        return result

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise WeightsError(
            f"{file_name}: the safetensors header is not valid JSON ({error}); {HINT}"
        ) from None
    if not isinstance(header, dict):
        raise WeightsError(f"{file_name}: the safetensors header is not a JSON object")
    return header


def _metadata(file_name: str, metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise WeightsError(f"{file_name}: __metadata__ must map strings to strings")
    return metadata


def _entries(file_name: str, header: dict) -> dict[str, TensorEntry]:
    if not header:
        raise WeightsError(f"{file_name} holds no tensors; {HINT}")
    if len(header) > MAX_TENSORS:
        raise WeightsError(f"{file_name} holds {len(header)} tensors; the limit is {MAX_TENSORS}")
    tensors = {}
    for name, info in header.items():
        if not name or len(name) > MAX_NAME_LENGTH:
            raise WeightsError(f"{file_name}: a tensor name is empty or too long")
        where = f"{file_name}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise WeightsError(f"{where} must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise WeightsError(
                f"{where} has dtype {dtype!r}; weights must be float16, bfloat16, float32 "
                "or float64 (int64 only for counters such as num_batches_tracked)"
            )
        if not _is_int_list(shape) or len(shape) > MAX_DIMS or any(d < 0 for d in shape):
            raise WeightsError(f"{where} has an invalid shape {shape!r}")
        if not _is_int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise WeightsError(f"{where} has invalid data_offsets {offsets!r}")
        entry = TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])
        if entry.end - entry.begin != math.prod(entry.shape) * DTYPE_SIZES[dtype]:
            raise WeightsError(
                f"{where}: its offsets span {entry.end - entry.begin} bytes but a "
                f"{format_shape(entry.shape)} {dtype} tensor needs "
                f"{math.prod(entry.shape) * DTYPE_SIZES[dtype]}"
            )
        tensors[name] = entry
    return tensors


def _is_int_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _check_layout(file_name: str, tensors: dict[str, TensorEntry], *, buffer_bytes: int) -> None:
    """The tensors must tile the data buffer: in order of offset, each begins where the
    previous one ended, and the last ends at the end of the file."""
    position = 0
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.end > buffer_bytes:
            raise WeightsError(
                f"{file_name}: tensor {name!r} ends at byte {entry.end} of the data but the "
                f"file holds only {buffer_bytes}; the file is truncated"
            )
        if entry.begin < position:
            raise WeightsError(f"{file_name}: tensor {name!r} overlaps another tensor's bytes")
        if entry.begin > position:
            raise WeightsError(f"{file_name}: bytes {position}..{entry.begin} belong to no tensor")
        position = entry.end
    if position != buffer_bytes:
        raise WeightsError(
            f"{file_name}: {buffer_bytes - position} bytes after the last tensor belong to "
            "no tensor"
        )


def check_shapes(found: Mapping[str, Shape], expected: Mapping[str, Shape], *, arch: str) -> None:
    """WeightsError listing missing, unexpected and mis-shaped tensors, if any.

    A common prefix on every name (e.g. "module." from DataParallel) is named in the
    message, since then the weights are right and only the names are not.
    """
    missing = {k: v for k, v in expected.items() if k not in found}
    unexpected = {k: v for k, v in found.items() if k not in expected}
    wrong = {k: (found[k], v) for k, v in expected.items() if k in found and found[k] != v}
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append("missing: " + _listed(f"{k} ({format_shape(v)})" for k, v in missing.items()))
    if unexpected:
        # Largest first: the weights say what the file is; the counters say little.
        largest = sorted(unexpected.items(), key=lambda item: -math.prod(item[1]))
        parts.append("unexpected: " + _listed(f"{k} ({format_shape(v)})" for k, v in largest))
    if wrong:
        parts.append(
            "wrong shape: "
            + _listed(
                f"{k} is {format_shape(got)}, expected {format_shape(want)}"
                for k, (got, want) in wrong.items()
            )
        )
    message = f"the weights do not fit {arch}: " + "; ".join(parts)
    prefix = _extra_prefix(found, expected)
    if prefix:
        message += f" (every name starts with {prefix!r}: save the bare model's state_dict())"
    raise WeightsError(message, missing=missing, unexpected=unexpected, wrong_shape=wrong)


def _listed(items) -> str:
    items = list(items)
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def _extra_prefix(found: Mapping[str, Shape], expected: Mapping[str, Shape]) -> str | None:
    names = list(found)
    if not names or "." not in names[0]:
        return None
    prefix = names[0].split(".", 1)[0] + "."
    if all(n.startswith(prefix) for n in names) and {n[len(prefix) :] for n in names} == set(
        expected
    ):
        return prefix
    return None
