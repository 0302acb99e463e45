"""Read one .npy member of a .npz archive with its header checked first.

numpy.load trusts the header: a header that lies about the shape either makes
numpy allocate what the header claims or fails with a misleading message. Here
the header is read alone, its shape and dtype must account for exactly the bytes
the member holds, and only then is data read - whole (`read`) or in bounded
chunks (`scan`). A damaged member (bad CRC, truncated deflate stream) raises
DataError naming the member, never zipfile's or zlib's own exceptions.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.errors import DataError

CHUNK_BYTES = 8 << 20
READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError)


@dataclass(frozen=True)
class NpyMember:
    archive: zipfile.ZipFile
    info: zipfile.ZipInfo
    label: str  # "data.npz: x_train" in messages
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    header_bytes: int

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def data_bytes(self) -> int:
        return self.count * self.dtype.itemsize

    def _damaged(self, error: BaseException) -> DataError:
        return DataError(
            f"{self.label} is damaged and cannot be read ({type(error).__name__}: {error}); "
            "save the file again"
        )

    def _open_data(self):
        handle = self.archive.open(self.info)
        handle.read(self.header_bytes)
        return handle

    def read(self) -> np.ndarray:
        """The whole array (the caller has bounded data_bytes)."""
        try:
            with self._open_data() as handle:
                data = handle.read(self.data_bytes)
                handle.read()  # to the end: zipfile checks the CRC there
        except READ_ERRORS as error:
            raise self._damaged(error) from error
        if len(data) != self.data_bytes:
            raise self._damaged(EOFError(f"{len(data)} of {self.data_bytes} bytes"))
        array = np.frombuffer(data, dtype=self.dtype)
        order = "F" if self.fortran_order else "C"
        # A writable copy: torch.from_numpy refuses read-only buffers.
        return array.reshape(self.shape, order=order).copy()

    def scan(self) -> Iterator[np.ndarray]:
        """The values as flat chunks of at most CHUNK_BYTES, reading to the end (CRC)."""
        step = max(1, CHUNK_BYTES // self.dtype.itemsize) * self.dtype.itemsize
        left = self.data_bytes
        try:
            with self._open_data() as handle:
                while left > 0:
                    data = handle.read(min(step, left))
                    if not data or len(data) % self.dtype.itemsize:
                        raise EOFError(f"member ends {left} bytes early")
                    left -= len(data)
                    yield np.frombuffer(data, dtype=self.dtype)
                handle.read()
        except READ_ERRORS as error:
            raise self._damaged(error) from error


def open_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> NpyMember:
    """The member's header, checked against its size; DataError if it does not add up."""
    try:
        with archive.open(info) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            header_bytes = handle.tell()
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataError(
            f"{label} is damaged and cannot be read ({type(error).__name__}: {error}); "
            "save the file again"
        ) from error
    except READ_ERRORS as error:
        raise DataError(
            f"{label} has no readable .npy header ({error}); store plain numeric arrays "
            "with numpy.savez"
        ) from error
    if dtype.hasobject or dtype.fields is not None or dtype.itemsize == 0:
        raise DataError(
            f"{label} has dtype {dtype}: object, structured or empty types are not accepted "
            "(they need pickle); store plain numeric arrays"
        )
    member = NpyMember(archive, info, label, tuple(shape), dtype, fortran, header_bytes)
    held = info.file_size - header_bytes
    if held != member.data_bytes:
        raise DataError(
            f"{label}: the .npy header says shape {member.shape} of {dtype} "
            f"({member.data_bytes:,} bytes) but the member holds {held:,} bytes of data; "
            "the file is damaged or was not written by numpy - save it again"
        )
    return member
