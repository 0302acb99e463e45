"""Datasets uploaded by users: a .npz of arrays or a zip of image folders.

.npz: x_train, y_train, x_test, y_test (optional num_classes, class_names).
      x: (N, H, W), (N, C, H, W) or (N, H, W, C), uint8 (0-255) or float;
      y: (N,) integer labels 0..K-1.
.zip: train/<class>/<image> and test/<class>/<image>, or just <class>/<image>
      (then 20% of each class is held out as the test set, seeded).

`validate_upload` checks a file without loading its images into tensors and
raises DataError with what to fix; `read_upload` loads it. Validation needs only
numpy (and Pillow for zips): the API checks uploads without importing torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from core.catalog import DatasetInfo
from core.data.safezip import DEFAULT_MAX_FILES, checked_entries, open_zip
from core.errors import DataError

if TYPE_CHECKING:
    from core.data.splits import RawDataset

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB on disk
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 << 30  # 4 GiB once expanded
MIN_IMAGE_SIZE = 4
MAX_IMAGE_SIZE = 1024
MAX_CHANNELS = 64
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = ("train", "test")
FOLDER_TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 0
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
NPZ_HINT = "save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
ZIP_HINT = "expected train/<class>/<image> and test/<class>/<image>, or <class>/<image>"


def validate_upload(
    path: Path | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> DatasetInfo:
    """Check an uploaded dataset; its DatasetInfo, or DataError saying what to fix."""
    path = Path(path)
    limits = dict(max_uncompressed_bytes=max_uncompressed_bytes, max_files=max_files)
    _check_file(path, max_bytes)
    upload_cls = _NpzUpload if path.suffix.lower() == ".npz" else _FolderZipUpload
    with contextlib.closing(upload_cls(path, **limits)) as upload:
        return upload.info()


def read_upload(
    path: Path | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> RawDataset:
    """Load an uploaded dataset (validating it on the way)."""
    path = Path(path)
    limits = dict(max_uncompressed_bytes=max_uncompressed_bytes, max_files=max_files)
    _check_file(path, max_bytes)
    upload_cls = _NpzUpload if path.suffix.lower() == ".npz" else _FolderZipUpload
    with contextlib.closing(upload_cls(path, **limits)) as upload:
        return upload.load()


def _check_file(path: Path, max_bytes: int) -> None:
    if path.suffix.lower() not in (".npz", ".zip"):
        raise DataError(f"{path.name}: upload a .npz file or a .zip of image folders")
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise DataError(
            f"{path.name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
        )


# ---------------------------------------------------------------------------- .npz


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
    elif y.dtype.kind not in "ui":
        raise DataError(f"{key} has dtype {y.dtype}; expected integer labels 0..K-1")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{key} holds label {int(y.min())}; labels must be 0..K-1")
    return y


class _NpzUpload:
    def __init__(self, path: Path, *, max_uncompressed_bytes: int, max_files: int) -> None:
        self.path = path
        self.label = path.name
        # A .npz is a zip: the same central-directory checks stop npz bombs.
        with open_zip(path, self.label, NPZ_HINT) as archive:
            checked_entries(
                archive,
                self.label,
                max_uncompressed_bytes=max_uncompressed_bytes,
                max_files=max_files,
            )
        try:
            self.npz = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise DataError(
                f"{self.label} is not a valid .npz file ({error}); {NPZ_HINT}"
            ) from error
        missing = [key for key in NPZ_KEYS if key not in self.npz.files]
        if missing:
            self.close()
            raise DataError(
                f"{self.label} lacks {', '.join(missing)} (it holds "
                f"{', '.join(self.npz.files) or 'nothing'}); {NPZ_HINT}"
            )

    def close(self) -> None:
        self.npz.close()

    def _array(self, key: str) -> np.ndarray:
        try:
            return self.npz[key]
        except ValueError as error:  # object arrays need pickle, which is never allowed
            raise DataError(
                f"{self.label}: {key} cannot be read without pickle ({error}); store plain "
                "numeric arrays"
            ) from error

    def _header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype from the array's .npy header, without reading the data."""
        with self.npz.zip.open(f"{key}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        return tuple(shape), dtype

    def _check(self) -> tuple[dict, dict]:
        layouts = {}
        for key in ("x_train", "x_test"):
            shape, dtype = self._header(key)
            _check_image_dtype(key, dtype)
            layouts[key] = _image_layout(key, shape)
        if layouts["x_train"][:3] != layouts["x_test"][:3]:
            c, h, w, _ = layouts["x_train"]
            tc, th, tw, _ = layouts["x_test"]
            raise DataError(
                f"x_test images are {tc}x{th}x{tw} (CxHxW) but x_train images are {c}x{h}x{w}; "
                "both must have the same channels and size"
            )
        labels = {key: _labels(key, self._array(key)) for key in ("y_train", "y_test")}
        for split in ("train", "test"):
            count = self._header(f"x_{split}")[0][0]
            if len(labels[f"y_{split}"]) != count:
                raise DataError(
                    f"y_{split} has {len(labels[f'y_{split}'])} labels for {count} images"
                )
        return layouts, labels

    def _classes(self, labels: dict) -> tuple[int, tuple[str, ...] | None]:
        names = None
        if "class_names" in self.npz.files:
            names = tuple(str(n) for n in self._array("class_names").reshape(-1))
        if "num_classes" in self.npz.files:
            num_classes = int(self._array("num_classes").reshape(-1)[0])
        elif names is not None:
            num_classes = len(names)
        else:
            num_classes = int(labels["y_train"].max()) + 1
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
        return num_classes, names

    def info(self) -> DatasetInfo:
        layouts, labels = self._check()
        num_classes, names = self._classes(labels)
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
        images = {}
        for key in ("x_train", "x_test"):
            x = self._array(key)
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
        )


# --------------------------------------------------------------- zip of image folders


def _is_ignored(parts: tuple[str, ...]) -> bool:
    # Archive tools add metadata entries that are not part of the dataset.
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


class _FolderZipUpload:
    def __init__(self, path: Path, *, max_uncompressed_bytes: int, max_files: int) -> None:
        self.path = path
        self.label = path.name
        self.archive = open_zip(path, self.label, f"zip the image folders ({ZIP_HINT})")
        try:
            self.samples = self._index(max_uncompressed_bytes, max_files)
        except BaseException:
            self.archive.close()
            raise

    def close(self) -> None:
        self.archive.close()

    def _index(self, max_uncompressed_bytes: int, max_files: int) -> list:
        entries = checked_entries(
            self.archive,
            self.label,
            max_uncompressed_bytes=max_uncompressed_bytes,
            max_files=max_files,
        )
        images = {}
        for info in entries:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if not _is_ignored(parts) and parts[-1].lower().endswith(IMAGE_SUFFIXES):
                images[parts] = info
        if not images:
            raise DataError(
                f"{self.label} holds no images ({', '.join(IMAGE_SUFFIXES)}); {ZIP_HINT}"
            )
        return self._assign(images)

    def _assign(self, images: dict) -> list[tuple[str, str, zipfile.ZipInfo]]:
        """(split, class, entry) for every image; split is "train", "test" or "" (to split)."""
        paths = list(images)
        # A zip of the dataset's parent folder adds one level: strip shared top folders.
        while all(len(p) >= 3 for p in paths) and len({p[0] for p in paths}) == 1:
            if paths[0][0].lower() in SPLIT_FOLDERS:
                break
            paths = [p[1:] for p in paths]
            images = dict(zip(paths, images.values(), strict=True))
        tops = {p[0].lower() for p in paths}
        if tops <= set(SPLIT_FOLDERS):
            if "train" not in tops:
                raise DataError(f"{self.label} has a test/ folder but no train/ folder; {ZIP_HINT}")
            depth, split_of = 3, (lambda p: p[0].lower() if "test" in tops else "")
        else:
            depth, split_of = 2, (lambda p: "")
        samples = []
        for parts, info in images.items():
            if len(parts) != depth:
                raise DataError(
                    f"{self.label}: {'/'.join(parts)} is not inside a class folder; {ZIP_HINT}"
                )
            samples.append((split_of(parts), parts[-2], info))
        classes = sorted({name for split, name, _ in samples if split != "test"})
        unknown = sorted({name for split, name, _ in samples if split == "test"} - set(classes))
        if unknown:
            raise DataError(
                f"{self.label}: test classes {', '.join(unknown)} have no train/ folder; "
                "every class needs training images"
            )
        if len(classes) < 2:
            raise DataError(f"{self.label} has {len(classes)} class folder; at least 2 needed")
        self.classes = tuple(classes)
        return samples

    def _open_image(self, info: zipfile.ZipInfo):
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(self.archive.read(info)))
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            OSError,
            zipfile.BadZipFile,
        ) as error:
            raise DataError(f"{self.label}: {info.filename} is not a readable image") from error
        return image

    def _scan(self) -> tuple[int, int]:
        """(channels, size) from every image's header, checking they agree."""
        sizes: Counter = Counter()
        first: dict = {}
        gray = True
        for _, _, info in self.samples:
            image = self._open_image(info)  # header only; pixels are decoded lazily
            sizes[image.size] += 1
            first.setdefault(image.size, info.filename)
            gray = gray and image.mode in GRAY_MODES
        if len(sizes) > 1:
            (common, _), (other, _) = sizes.most_common(2)
            raise DataError(
                f"{self.label}: images differ in size ({first[other]} is "
                f"{other[0]}x{other[1]}, most are {common[0]}x{common[1]}); resize them all "
                "to one square size"
            )
        width, height = next(iter(sizes))
        if width != height:
            raise DataError(
                f"{self.label}: images are {width}x{height}; they must be square - pad or "
                "resize them"
            )
        if not MIN_IMAGE_SIZE <= width <= MAX_IMAGE_SIZE:
            raise DataError(
                f"{self.label}: images are {width}x{height} px; sizes from {MIN_IMAGE_SIZE} to "
                f"{MAX_IMAGE_SIZE} px are supported"
            )
        return (1 if gray else 3), width

    def _test_mask(self) -> np.ndarray:
        """Which samples are test images: the test/ folder, or a seeded 20% per class."""
        splits = np.array([split for split, _, _ in self.samples])
        if (splits == "test").any():
            return splits == "test"
        labels = np.array([name for _, name, _ in self.samples])
        rng = np.random.default_rng(FOLDER_SPLIT_SEED)
        mask = np.zeros(len(labels), dtype=bool)
        for name in self.classes:
            members = np.flatnonzero(labels == name)
            count = round(len(members) * FOLDER_TEST_FRACTION)
            mask[rng.permutation(members)[:count]] = True
        if not mask.any() or mask.all():
            raise DataError(
                f"{self.label} has too few images to hold out a test set; add images or "
                "provide train/ and test/ folders"
            )
        return mask

    def info(self) -> DatasetInfo:
        channels, size = self._scan()
        test = self._test_mask()
        return DatasetInfo(
            num_classes=len(self.classes),
            in_channels=channels,
            image_size=size,
            name=self.path.stem,
            num_train=int((~test).sum()),
            num_test=int(test.sum()),
            class_names=self.classes,
        )

    def load(self) -> RawDataset:
        import torch

        from core.data.splits import RawDataset

        channels, size = self._scan()
        test = self._test_mask()
        mode = "L" if channels == 1 else "RGB"
        x = np.empty((len(self.samples), size, size, channels), dtype=np.uint8)
        index = {name: i for i, name in enumerate(self.classes)}
        y = np.array([index[name] for _, name, _ in self.samples], dtype=np.int64)
        for i, (_, _, info) in enumerate(self.samples):
            pixels = np.asarray(self._open_image(info).convert(mode))
            x[i] = pixels.reshape(size, size, channels)
        x_t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        y_t = torch.from_numpy(y)
        train_idx = torch.from_numpy(np.flatnonzero(~test))
        test_idx = torch.from_numpy(np.flatnonzero(test))
        return RawDataset(
            name=self.path.stem,
            x_train=x_t[train_idx],
            y_train=y_t[train_idx],
            x_test=x_t[test_idx],
            y_test=y_t[test_idx],
            num_classes=len(self.classes),
            class_names=self.classes,
        )
