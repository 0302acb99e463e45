"""An uploaded zip of image folders: train/<class>/<image> and test/<class>/<image>, or
<class>/<image> (then a seeded share of each class is the test set), read image by image
from the archive (core.data.upload)."""

from __future__ import annotations

import contextlib
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from core.catalog import DatasetInfo
from core.data.limits import UploadLimits
from core.data.safezip import checked_entries, open_zip
from core.data.upload_checks import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from core.errors import DataError

if TYPE_CHECKING:
    from core.data.splits import RawDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDERS = ("train", "test")
FOLDER_TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 0
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
ZIP_HINT = "expected train/<class>/<image> and test/<class>/<image>, or <class>/<image>"
IGNORED_FILES = ("thumbs.db", "desktop.ini")
# Besides images a zip may carry a few small notes (README.txt); nothing else.
NOTE_SUFFIXES = (".txt", ".md", ".csv", ".json", ".yaml", ".yml")
MAX_NOTES = 16
MAX_NOTE_BYTES = 64 << 10


def _is_ignored(parts: tuple[str, ...]) -> bool:
    # Archive tools add metadata entries that are not part of the dataset.
    return (
        any(part.startswith(".") or part == "__MACOSX" for part in parts)
        or parts[-1].lower() in IGNORED_FILES
    )


class FolderZipUpload:
    def __init__(self, path: Path, limits: UploadLimits) -> None:
        self.path = path
        self.label = path.name
        self.limits = limits
        self.archive = open_zip(path, self.label, f"zip the image folders ({ZIP_HINT})")
        try:
            self.samples = self._index()
        except BaseException:
            self.archive.close()
            raise

    def close(self) -> None:
        self.archive.close()

    def _index(self) -> list:
        entries = checked_entries(
            self.archive,
            self.label,
            max_uncompressed_bytes=self.limits.max_uncompressed_bytes,
            max_files=self.limits.max_files,
        )
        images, others = {}, []
        for info in entries:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if not parts or _is_ignored(parts):
                continue
            if parts[-1].lower().endswith(IMAGE_SUFFIXES):
                images[parts] = info
            else:
                others.append(info)
        self._check_others(others)
        if not images:
            raise DataError(
                f"{self.label} holds no images ({', '.join(IMAGE_SUFFIXES)}); {ZIP_HINT}"
            )
        self.limits.check_samples(self.label, len(images))
        return self._assign(images)

    def _check_others(self, others: list[zipfile.ZipInfo]) -> None:
        notes = [
            info
            for info in others
            if info.filename.lower().endswith(NOTE_SUFFIXES) and info.file_size <= MAX_NOTE_BYTES
        ]
        refused = [info for info in others if info not in notes]
        if refused or len(notes) > MAX_NOTES:
            first = (refused or notes)[0]
            raise DataError(
                f"{self.label}: {first.filename} is not an image ({len(others)} entries are "
                f"not); the zip may hold only images ({', '.join(IMAGE_SUFFIXES)}) in class "
                f"folders, plus up to {MAX_NOTES} small text files such as README.txt"
            )

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

    @contextlib.contextmanager
    def _image(self, info: zipfile.ZipInfo):
        """The entry opened as an image, streamed from the zip: only its header is read
        until the caller asks for pixels. Any failure of the image decoders on hostile
        input is the user's unreadable file, not a crash."""
        from PIL import Image

        try:
            with self.archive.open(info) as handle, Image.open(handle) as image:
                yield image
        except DataError:
            raise
        except Exception as error:
            raise DataError(
                f"{self.label}: {info.filename} is not a readable image "
                f"({type(error).__name__}: {_first_line(error)}); remove or replace it"
            ) from error

    def _scan(self) -> tuple[int, int]:
        """(channels, size) from every image's header, checking they agree and that the
        decoded images fit the limits - before any pixel is decoded."""
        sizes: Counter = Counter()
        first: dict = {}
        gray = True
        for _, _, info in self.samples:
            with self._image(info) as image:
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
        channels = 1 if gray else 3
        decoded = len(self.samples) * width * height * channels
        self.limits.check_decoded(
            self.label, decoded, f"{len(self.samples):,} images of {width}x{height}x{channels}"
        )
        return channels, width

    def _pixels(self, info: zipfile.ZipInfo, channels: int, size: int) -> np.ndarray:
        """One image decoded to (size, size, channels) uint8."""
        with self._image(info) as image:
            if image.mode == "F":
                values = np.asarray(image)
                if not np.isfinite(values).all():
                    raise DataError(f"{self.label}: {info.filename} holds NaN or infinite values")
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
        return pixels.reshape(size, size, channels)

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
        for _, _, info in self.samples:  # every image decodes, so a job will not fail on one
            self._pixels(info, channels, size)
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
        x = np.empty((len(self.samples), size, size, channels), dtype=np.uint8)
        index = {name: i for i, name in enumerate(self.classes)}
        y = np.array([index[name] for _, name, _ in self.samples], dtype=np.int64)
        for i, (_, _, info) in enumerate(self.samples):
            x[i] = self._pixels(info, channels, size)
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
            # Decoded pixels as Pillow gives them: (H, W) for "L", (H, W, 3) for "RGB".
            layout="NHW" if channels == 1 else "NHWC",
            dtype="uint8",
        )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else ""
