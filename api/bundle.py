"""A job's artifacts as one zip, written while it is sent (no temporary file).

The files go into a folder named after the job, so unpacking gives a folder that
`lorita.load_lowrank(folder)` reads as is. Weights and ONNX models are stored
uncompressed (they barely shrink and deflating them costs the API's CPU); the
text files are deflated.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20
DEFLATED_SUFFIXES = (".json", ".md", ".txt", ".csv", ".log")


class _Chunks:
    """A write-only file object that collects what zipfile writes, to be yielded."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(files: list[tuple[str, Path]], folder: str) -> Iterator[bytes]:
    """The zip of `files` ([(name, path)]), under `folder/`, as a stream of chunks."""
    sink = _Chunks()
    # An unseekable target: zipfile writes sizes after each entry (data descriptors).
    with zipfile.ZipFile(sink, "w") as archive:  # type: ignore[arg-type]
        for name, path in files:
            deflate = name.lower().endswith(DEFLATED_SUFFIXES)
            info = zipfile.ZipInfo.from_file(path, f"{folder}/{name}")
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            with open(path, "rb") as source, archive.open(info, "w", force_zip64=True) as entry:
                while chunk := source.read(CHUNK_BYTES):
                    entry.write(chunk)
                    yield sink.drain()
            yield sink.drain()
    yield sink.drain()
