"""Reader for IDX files (the MNIST family's format), gzipped or not.

Layout: two zero bytes, a type code, the number of dimensions, one big-endian
uint32 per dimension, then the values in C order (big-endian).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from core.errors import DataError

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def is_gzipped(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _read_bytes(path: Path) -> bytes:
    try:
        if is_gzipped(path):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"{path} cannot be read ({error}); delete it and fetch it again") from error


def read_idx(path: Path | str, expected_ndim: int | None = None) -> np.ndarray:
    """The array stored in an IDX file; DataError naming the file if it is not one."""
    path = Path(path)
    data = _read_bytes(path)
    refetch = "; delete it and fetch the dataset again"
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (magic number {data[:4].hex()}){refetch}")
    ndim = data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(
            f"{path} holds a {ndim}-d array but a {expected_ndim}-d one was expected "
            f"(images are 3-d, labels 1-d){refetch}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header incomplete){refetch}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[data[2]]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path} has {len(data) - header} bytes of data but its header {shape} "
            f"needs {expected}{refetch}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # A writable native-endian copy: torch.from_numpy refuses read-only buffers.
    return np.array(array, dtype=dtype.newbyteorder("="))
