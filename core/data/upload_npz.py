"""An uploaded .npz of arrays: x_train, y_train, x_test, y_test (optional num_classes,
class_names), checked from the array headers and in bounded memory (core.data.upload)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.catalog import DatasetInfo
from core.data.limits import UploadLimits
from core.data.npymember import NpyMember, open_npy_member
from core.data.safezip import checked_entries, open_zip
from core.data.upload_checks import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, check_label_coverage
from core.errors import DataError

if TYPE_CHECKING:
    from core.data.splits import RawDataset

MAX_CHANNELS = 64
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_HINT = "save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


def _image_layout(key: str, shape: tuple[int, ...]) -> tuple[int, int, int, str]:
    """(channels, height, width, layout) of an image array's shape, or DataError."""
    expected = "expected (N, H, W), (N, C, H, W) or (N, H, W, C)"
    if len(shape) == 3:
        channels, height, width, layout = 1, shape[1], shape[2], "NHW"
    elif len(shape) == 4:
        nchw, nhwc = shape[2] == shape[3], shape[1] == shape[2]
        if nhwc and (not nchw or shape[3] <= 4 < shape[1]):
            channels, height, width, layout = shape[3], shape[1], shape[2], "NHWC"
        else:
            channels, height, width, layout = shape[1], shape[2], shape[3], "NCHW"
    else:
        raise DataError(f"{key} has shape {tuple(shape)}; {expected}")
    if shape[0] == 0:
        raise DataError(f"{key} holds no images")
    if height != width:
        raise DataError(
            f"{key} has shape {tuple(shape)}: images are {height}x{width}, but they must be "
            f"square (H == W); {expected} - pad or resize the images"
        )
    if not MIN_IMAGE_SIZE <= height <= MAX_IMAGE_SIZE:
        raise DataError(
            f"{key} images are {height}x{width} px; sizes from {MIN_IMAGE_SIZE} to "
            f"{MAX_IMAGE_SIZE} px are supported"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise DataError(f"{key} images have {channels} channels; 1 to {MAX_CHANNELS} supported")
    return channels, height, width, layout


def _check_image_dtype(key: str, dtype: np.dtype) -> None:
    if dtype.kind not in "uifb":
        raise DataError(f"{key} has dtype {dtype}; expected uint8 (0-255) or float images")


def _labels(key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{key} has shape {tuple(y.shape)}; expected (N,) integer labels")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{key} holds non-integer labels; labels must be integers 0..K-1")
    elif y.dtype.kind not in "uib":
        raise DataError(f"{key} has dtype {y.dtype}; expected integer labels 0..K-1")
    if len(y) and y.min() < 0:
        raise DataError(f"{key} holds label {int(y.min())}; labels must be 0..K-1")
    if len(y) and y.max() > np.iinfo(np.int64).max // 2:
        raise DataError(f"{key} holds label {y.max()}; labels must be 0..K-1")
    return y.astype(np.int64)


class NpzUpload:
    def __init__(self, path: Path, limits: UploadLimits) -> None:
        self.path = path
        self.label = path.name
        self.limits = limits
        self.archive = open_zip(path, self.label, NPZ_HINT)
        try:
            # A .npz is a zip: the same central-directory checks stop npz bombs.
            entries = checked_entries(
                self.archive,
                self.label,
                max_uncompressed_bytes=limits.max_uncompressed_bytes,
                max_files=limits.max_files,
            )
            self.entries = {info.filename: info for info in entries}
            self.members = {key: self._member(key) for key in NPZ_KEYS}
        except BaseException:
            self.archive.close()
            raise

    def close(self) -> None:
        self.archive.close()

    def _member(self, key: str) -> NpyMember:
        info = self.entries.get(f"{key}.npy")
        if info is None:
            if key in self.entries:
                raise DataError(
                    f"{self.label}: the member {key!r} is not named {key}.npy, so it is not a "
                    f"numpy array; {NPZ_HINT}"
                )
            missing = [k for k in NPZ_KEYS if f"{k}.npy" not in self.entries]
            held = sorted(name.removesuffix(".npy") for name in self.entries)
            raise DataError(
                f"{self.label} lacks {', '.join(missing)} (it holds "
                f"{', '.join(held[:10]) or 'nothing'}); {NPZ_HINT}"
            )
        return open_npy_member(self.archive, info, f"{self.label}: {key}")

    def _optional(self, key: str, max_count: int) -> np.ndarray | None:
        info = self.entries.get(f"{key}.npy")
        if info is None:
            return None
        member = open_npy_member(self.archive, info, f"{self.label}: {key}")
        if member.count > max_count or member.data_bytes > 1 << 20:
            raise DataError(
                f"{self.label}: {key} has shape {member.shape}; expected at most {max_count} values"
            )
        return member.read()

    def _check(self) -> tuple[dict, dict]:
        """Everything decided from headers, then the labels (small once bounded)."""
        layouts = {}
        for key in ("x_train", "x_test"):
            member = self.members[key]
            _check_image_dtype(key, member.dtype)
            layouts[key] = _image_layout(key, member.shape)
        if layouts["x_train"][:3] != layouts["x_test"][:3]:
            c, h, w, _ = layouts["x_train"]
            tc, th, tw, _ = layouts["x_test"]
            raise DataError(
                f"x_test images are {tc}x{th}x{tw} (CxHxW) but x_train images are {c}x{h}x{w}; "
                "both must have the same channels and size"
            )
        images = {split: self.members[f"x_{split}"].shape[0] for split in ("train", "test")}
        self.limits.check_samples(self.label, sum(images.values()))
        decoded = sum(self.members[k].data_bytes for k in ("x_train", "x_test"))
        self.limits.check_decoded(self.label, decoded, "x_train and x_test")
        labels = {}
        for split in ("train", "test"):
            member = self.members[f"y_{split}"]
            count = member.shape[0] if member.shape else 1
            if count != images[split] or member.count != count:
                raise DataError(
                    f"y_{split} has {count} labels for {images[split]} images"
                    if member.count == count
                    else f"y_{split} has shape {member.shape}; expected (N,) integer labels"
                )
            if member.dtype.itemsize > 8:
                raise DataError(f"y_{split} has dtype {member.dtype}; expected integer labels")
            labels[f"y_{split}"] = _labels(f"y_{split}", member.read())
        return layouts, labels

    def _classes(self, labels: dict) -> tuple[int, tuple[str, ...] | None]:
        names = None
        name_array = self._optional("class_names", self.limits.max_classes)
        if name_array is not None:
            if name_array.dtype.kind not in "US":
                raise DataError(f"class_names has dtype {name_array.dtype}; expected strings")
            names = tuple(str(n) for n in name_array.reshape(-1))
        count_array = self._optional("num_classes", 1)
        if count_array is not None:
            if count_array.size != 1 or count_array.dtype.kind not in "ui":
                raise DataError("num_classes must be a single integer, e.g. numpy.array(10)")
            num_classes = int(count_array.reshape(-1)[0])
        elif names is not None:
            num_classes = len(names)
        else:
            num_classes = int(labels["y_train"].max()) + 1
        self.limits.check_classes(self.label, num_classes)
        if names is not None and len(names) != num_classes:
            raise DataError(
                f"class_names has {len(names)} names but there are {num_classes} classes"
            )
        if num_classes < 2:
            raise DataError("y_train holds a single class; at least 2 classes are needed")
        for key, y in labels.items():
            top = int(y.max())
            if top >= num_classes:
                raise DataError(
                    f"{key} holds label {top} but there are {num_classes} classes "
                    f"(labels must be 0..{num_classes - 1})"
                )
        check_label_coverage(self.label, labels["y_train"], num_classes)
        return num_classes, names

    def _check_values(self) -> None:
        """Read every image value once, in chunks: damaged members and NaN/inf are found
        now, not when a job trains on them."""
        for key in ("x_train", "x_test"):
            member = self.members[key]
            for chunk in member.scan():
                if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
                    raise DataError(
                        f"{self.label}: {key} holds NaN or infinite values; replace them "
                        "(e.g. numpy.nan_to_num) before uploading"
                    )

    def info(self) -> DatasetInfo:
        layouts, labels = self._check()
        num_classes, names = self._classes(labels)
        self._check_values()
        channels, size, _, _ = layouts["x_train"]
        return DatasetInfo(
            num_classes=num_classes,
            in_channels=channels,
            image_size=size,
            name=self.path.stem,
            num_train=len(labels["y_train"]),
            num_test=len(labels["y_test"]),
            class_names=names,
        )

    def load(self) -> RawDataset:
        import torch

        from core.data.splits import RawDataset, as_tensor_images

        layouts, labels = self._check()
        num_classes, names = self._classes(labels)
        images, dtypes = {}, {}
        for key in ("x_train", "x_test"):
            x = self.members[key].read()
            dtypes[key] = str(x.dtype)
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                raise DataError(f"{self.label}: {key} holds NaN or infinite values")
            layout = layouts[key][3]
            if layout == "NHW":
                x = x[:, None]
            elif layout == "NHWC":
                x = x.transpose(0, 3, 1, 2)
            images[key] = as_tensor_images(x)
        return RawDataset(
            name=self.path.stem,
            x_train=images["x_train"],
            y_train=torch.from_numpy(labels["y_train"]),
            x_test=images["x_test"],
            y_test=torch.from_numpy(labels["y_test"]),
            num_classes=num_classes,
            class_names=names,
            layout=layouts["x_train"][3],  # the exported models take the file's layout
            dtype=dtypes["x_train"],
        )
