"""How much an uploaded dataset may hold, checked before anything is decoded.

The file size and the zip's declared sizes bound what is stored; these limits
bound what the data becomes once decoded (pixels, samples, classes), because a
few hundred kilobytes of PNG or a header-only .npy can describe gigabytes. Every
limit is checked from headers alone, before any array or image is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from core.errors import DataError

DEFAULT_MAX_FILES = 200_000
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB on disk
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 << 30  # 4 GiB once expanded
# The images as stored once decoded (uint8 pixels, or the .npy arrays' own bytes).
# Training holds them as float32, so a worker needs up to 4x this in memory.
DEFAULT_MAX_DECODED_BYTES = 512 << 20
DEFAULT_MAX_SAMPLES = 1_000_000  # train + test images
DEFAULT_MAX_CLASSES = 1000


class UploadLimitExceeded(DataError):
    """The dataset is well formed but larger than this service accepts (HTTP 413)."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
    max_files: int = DEFAULT_MAX_FILES
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    max_samples: int = DEFAULT_MAX_SAMPLES
    max_classes: int = DEFAULT_MAX_CLASSES

    @classmethod
    def of(cls, **values: int | None) -> UploadLimits:
        """Limits from keyword arguments; None or absent keeps the default."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown upload limits: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def check_samples(self, label: str, count: int) -> None:
        if count > self.max_samples:
            raise UploadLimitExceeded(
                f"{label} holds {count:,} images; the limit is {self.max_samples:,} "
                "(UPLOAD_MAX_SAMPLES) - upload a subset"
            )

    def check_decoded(self, label: str, decoded: int, what: str) -> None:
        if decoded > self.max_decoded_bytes:
            raise UploadLimitExceeded(
                f"{label}: {what} come to {decoded / 1e6:,.1f} MB once decoded; the limit is "
                f"{self.max_decoded_bytes / 1e6:,.1f} MB (UPLOAD_MAX_DECODED_BYTES) - use "
                "fewer or smaller images"
            )

    def check_classes(self, label: str, num_classes: int) -> None:
        if num_classes > self.max_classes:
            raise DataError(
                f"{label} has {num_classes:,} classes; at most {self.max_classes:,} are "
                "supported (UPLOAD_MAX_CLASSES) - labels must be 0..K-1"
            )
