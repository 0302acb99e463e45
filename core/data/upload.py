"""Datasets uploaded by users: a .npz of arrays or a zip of image folders.

.npz: x_train, y_train, x_test, y_test (optional num_classes, class_names).
      x: (N, H, W), (N, C, H, W) or (N, H, W, C), uint8 (0-255) or float;
      y: (N,) integer labels 0..K-1.
.zip: train/<class>/<image> and test/<class>/<image>, or just <class>/<image>
      (then 20% of each class is held out as the test set, seeded).

`validate_upload` checks a file without loading its images into tensors and
raises DataError with what to fix; `read_upload` loads it. Validation needs only
numpy (and Pillow for zips): the API checks uploads without importing torch.

The readers: core.data.upload_npz and core.data.upload_zip, with the checks they
share in core.data.upload_checks.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from core.catalog import DatasetInfo
from core.data.limits import UploadLimitExceeded, UploadLimits
from core.data.upload_file import checked_size
from core.data.upload_npz import NpzUpload
from core.data.upload_zip import FolderZipUpload
from core.errors import DataError

if TYPE_CHECKING:
    from core.data.splits import RawDataset


def validate_upload(path: Path | str, **limits: int | None) -> DatasetInfo:
    """Check an uploaded dataset completely (every value and image is read once, in
    bounded memory); its DatasetInfo, or DataError saying what to fix.

    limits: the fields of UploadLimits (max_bytes, max_uncompressed_bytes, max_files,
    max_decoded_bytes, max_samples, max_classes); UploadLimitExceeded for a dataset
    that is well formed but too large.
    """
    with _open_upload(Path(path), UploadLimits.of(**limits)) as upload:
        return upload.info()


def read_upload(path: Path | str, **limits: int | None) -> RawDataset:
    """Load an uploaded dataset (checking it on the way with the same limits)."""
    with _open_upload(Path(path), UploadLimits.of(**limits)) as upload:
        return upload.load()


def _open_upload(path: Path, limits: UploadLimits):
    _check_file(path, limits.max_bytes)
    upload_cls = NpzUpload if path.suffix.lower() == ".npz" else FolderZipUpload
    return contextlib.closing(upload_cls(path, limits))


def _check_file(path: Path, max_bytes: int) -> None:
    if path.suffix.lower() not in (".npz", ".zip"):
        raise DataError(f"{path.name}: upload a .npz file or a .zip of image folders")
    checked_size(path, max_bytes, label=f"dataset file {path}", too_large=UploadLimitExceeded)
