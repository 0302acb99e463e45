"""Uploaded weights checked against their architecture, without torch in this process.

Two halves, each where it can run:
- the file itself (bounds, JSON header, dtypes, offsets tiling the data; nothing is
  unpickled) is checked here by core.weights.read_header, before the upload is
  stored, and `check_finite` reads every float value through a memory map (numpy)
  and refuses NaN or infinity;
- what the architecture expects (names, shapes, float or integer) needs a built
  model, hence torch. This process asks `python -m core.models.state_shapes` in a
  short subprocess of the same interpreter, which builds the model on the meta
  device and never sees the user's file, and compares the answer with the header
  here. The answer depends only on (arch, num_classes, in_channels, image_size), so
  it is cached.

Where the engine is not installed beside the API (the API image leaves torch out),
the second half is "deferred": the header was checked, the upload records the
architecture it is for, and the worker, which loads the weights strictly, refuses a
mismatch with the same list of missing, unexpected and mis-shaped tensors when the
job starts.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from functools import lru_cache

import numpy as np

from core.weights import WeightsError, WeightsHeader, check_shapes

log = logging.getLogger("lorita.api")

CHECKED = "checked"
DEFERRED = "deferred"
# Importing torch and building a large model on the meta device: seconds, rarely more.
SHAPES_TIMEOUT_S = 180


def engine_available() -> bool:
    """Whether torch is installed for this interpreter (looked up, never imported)."""
    return importlib.util.find_spec("torch") is not None


class ShapesUnavailable(Exception):
    """The expected shapes could not be computed (a broken engine, a timeout)."""


@lru_cache(maxsize=64)
def _expected(arch: str, num_classes: int, in_channels: int, image_size: int) -> str:
    command = [
        sys.executable,
        "-m",
        "core.models.state_shapes",
        arch,
        str(num_classes),
        str(in_channels),
        str(image_size),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SHAPES_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise ShapesUnavailable(f"building {arch} took over {SHAPES_TIMEOUT_S}s") from error
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise ShapesUnavailable(done.stderr.strip()[-500:] or f"exit status {done.returncode}")
    answer = json.loads(lines[-1])
    if "error" in answer:
        # The architecture cannot be built for these shapes: the user's choice, not a bug.
        raise WeightsError(f"{arch} cannot be built as asked: {answer['error']}")
    return lines[-1]


def expected_tensors(
    arch: str, num_classes: int, in_channels: int, image_size: int
) -> dict[str, tuple[tuple[int, ...], bool]]:
    """{name: (shape, is_float)} of the architecture's state dict."""
    answer = json.loads(_expected(arch, num_classes, in_channels, image_size))
    return {
        name: (tuple(entry["shape"]), bool(entry["float"]))
        for name, entry in answer["tensors"].items()
    }


# numpy's view of each float dtype; bfloat16 has none, so its bits are read as uint16.
NUMPY_FLOATS = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": "<u2"}
BF16_EXPONENT = 0x7F80  # all exponent bits set: infinity or NaN
CHUNK_ELEMENTS = 1 << 22  # values checked at a time (bounded memory whatever the file)


def check_finite(path, header: WeightsHeader) -> None:
    """WeightsError naming the first tensor that holds NaN or infinity.

    Reads the values straight from the data buffer the header describes (a memory
    map, chunk by chunk), so no tensor library is needed and nothing is unpickled.
    """
    if not header.tensors:
        return
    data_start = header.file_bytes - max(entry.end for entry in header.tensors.values())
    for name, entry in header.tensors.items():
        if not entry.is_float or entry.end == entry.begin:
            continue
        values = np.memmap(
            path,
            dtype=NUMPY_FLOATS[entry.dtype],
            mode="r",
            offset=data_start + entry.begin,
            shape=((entry.end - entry.begin) // np.dtype(NUMPY_FLOATS[entry.dtype]).itemsize,),
        )
        try:
            for start in range(0, values.shape[0], CHUNK_ELEMENTS):
                chunk = values[start : start + CHUNK_ELEMENTS]
                if entry.dtype == "BF16":
                    bad = int(np.count_nonzero((chunk & BF16_EXPONENT) == BF16_EXPONENT))
                else:
                    bad = int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
                if bad:
                    raise WeightsError(
                        f"tensor {name} holds NaN or infinite values; these weights cannot "
                        "be compressed"
                    )
        finally:
            del values


def check_fit(
    header: WeightsHeader, expected: dict[str, tuple[tuple[int, ...], bool]], *, arch: str
) -> None:
    """WeightsError listing missing, unexpected, mis-shaped and mis-typed tensors."""
    check_shapes(header.shapes(), {name: shape for name, (shape, _) in expected.items()}, arch=arch)
    wrong_kind = {
        name: entry.dtype
        for name, entry in header.tensors.items()
        if entry.is_float != expected[name][1]
    }
    if wrong_kind:
        details = ", ".join(
            f"{name} is {dtype}, expected {'a float' if expected[name][1] else 'an integer'}"
            for name, dtype in wrong_kind.items()
        )
        raise WeightsError(f"the weights do not fit {arch}: wrong dtype: {details}")


def check_against_arch(
    header: WeightsHeader, arch: str, num_classes: int, in_channels: int, image_size: int
) -> str:
    """CHECKED when the weights fit, DEFERRED when this process cannot tell; raises
    WeightsError (with the mismatch lists) when they do not fit."""
    if not engine_available():
        return DEFERRED
    try:
        expected = expected_tensors(arch, num_classes, in_channels, image_size)
    except ShapesUnavailable as error:
        log.warning("weights for %s: shape check deferred to the worker (%s)", arch, error)
        return DEFERRED
    check_fit(header, expected, arch=arch)
    return CHECKED
