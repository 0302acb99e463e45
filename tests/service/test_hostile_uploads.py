"""A corpus of hostile and broken uploads: each is refused with a 4xx and a message,
nothing is written to the dataset folder or the database, and the API's memory stays
bounded (the peak RSS of this process, which runs the API, is measured per case).

Most cases run against the default limits; the few that probe a limit's value run
against an API with small limits, so the files stay small.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app

from .conftest import Api
from .test_uploads import snapshot, tiny_npz, upload

pytestmark = pytest.mark.service

# Far below what the refused cases would need if they were decoded (hundreds of MB
# to terabytes), far above the payloads themselves (a few MB, copied by the client).
RSS_GROWTH_BOUND_MB = 150
TIGHT = {
    "upload_max_samples": 500,
    "upload_max_decoded_bytes": 2_000_000,
    "upload_max_classes": 50,
}


# --- builders -------------------------------------------------------------------------


def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return np.lib.format.MAGIC_PREFIX + b"\x01\x00" + buffer.getvalue()[8:]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def members_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def base_members(**overrides: np.ndarray | bytes | None) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arrays: dict = {
        "x_train": rng.integers(0, 256, (60, 8, 8), dtype=np.uint8),
        "y_train": np.arange(60) % 3,
        "x_test": rng.integers(0, 256, (30, 8, 8), dtype=np.uint8),
        "y_test": np.arange(30) % 3,
    }
    arrays.update(overrides)
    return {
        f"{key}.npy": value if isinstance(value, bytes) else npy_bytes(value)
        for key, value in arrays.items()
        if value is not None
    }


def npz_of(**overrides) -> bytes:
    return members_zip(base_members(**overrides))


def flip_byte_in(data: bytes, member: str, from_end: int = 3) -> bytes:
    """The archive with one byte of `member`'s stored data changed (its CRC now fails)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len
    at = start + info.compress_size - from_end
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def png(size: int = 8, mode: str = "RGB", value: int = 0) -> bytes:
    buffer = io.BytesIO()
    color = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, (size, size), color=color).save(buffer, format="PNG")
    return buffer.getvalue()


def float_tiff(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.float32), mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


def image_zip(extra: dict[str, bytes] | None = None, count: int = 4, **kwargs) -> bytes:
    entries = {f"{c}/{i}.png": png(**kwargs) for c in ("cat", "dog") for i in range(count)}
    entries.update(extra or {})
    return members_zip(entries, zipfile.ZIP_DEFLATED)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data is a few bytes."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def special_entry_zip(kind: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cat/1.png", png())
        archive.writestr("dog/1.png", png())
        info = zipfile.ZipInfo("dog/2.png")
        if kind == "symlink":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
        elif kind == "encrypted":
            archive.writestr(info, png())
    data = buffer.getvalue()
    if kind == "encrypted":  # set the encryption flag in both headers of dog/2.png
        name = b"dog/2.png"
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            local = archive.getinfo("dog/2.png").header_offset
        central = next(
            i
            for i in range(len(data))
            if data[i : i + 4] == b"PK\x01\x02" and data[i + 46 : i + 46 + len(name)] == name
        )
        patched = bytearray(data)
        patched[local + 6] |= 1
        patched[central + 8] |= 1
        data = bytes(patched)
    return data


def bomb_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=np.zeros((20_000, 32, 32), np.uint8))
    return buffer.getvalue()


def many_big_pngs(count: int, size: int) -> bytes:
    """count RGB images of size x size: tiny compressed, huge decoded."""
    image = png(size=size)
    entries = {f"{'ab'[i % 2]}/{i}.png": image for i in range(count)}
    return members_zip(entries, zipfile.ZIP_DEFLATED)


# --- the corpus -----------------------------------------------------------------------

# (id, filename, payload builder, status, text the message must contain, limits)
Case = tuple[str, str, Callable[[], bytes], int, str, str]
CASES: list[Case] = [
    # .npz: damaged archives and members
    ("npz-bad-crc", "d.npz", lambda: flip_byte_in(npz_of(), "x_train.npy"), 422, "damaged", ""),
    ("npz-bad-crc-labels", "d.npz", lambda: flip_byte_in(npz_of(), "y_train.npy"), 422, "", ""),
    ("npz-truncated", "d.npz", lambda: npz_of()[:2000], 422, "", ""),
    ("npz-empty-file", "d.npz", lambda: b"", 422, "not a valid zip", ""),
    ("npz-not-a-zip", "d.npz", lambda: b"\x93NUMPY" + b"\0" * 200, 422, "zip", ""),
    (
        "npz-member-without-npy",
        "d.npz",
        lambda: members_zip(
            {**base_members(x_train=None), "x_train": npy_bytes(np.zeros((60, 8, 8)))}
        ),
        422,
        "x_train.npy",
        "",
    ),
    ("npz-missing-member", "d.npz", lambda: npz_of(y_test=None), 422, "lacks y_test", ""),
    ("npz-garbage-member", "d.npz", lambda: npz_of(x_train=b"not an npy file"), 422, "header", ""),
    # .npz: headers that lie
    (
        "npz-header-only-x",
        "d.npz",
        lambda: npz_of(x_train=npy_header((50_000, 28, 28)), y_train=np.zeros(50_000, np.uint8)),
        422,
        "header says",
        "",
    ),
    (
        "npz-header-short",
        "d.npz",
        lambda: npz_of(x_train=npy_header((60, 8, 8)) + b"\0" * 100),
        422,
        "header says",
        "",
    ),
    (
        "npz-header-long",
        "d.npz",
        lambda: npz_of(x_train=npy_bytes(np.zeros((60, 8, 8), np.uint8)) + b"\0" * 64),
        422,
        "header says",
        "",
    ),
    (
        "npz-huge-label-header",
        "d.npz",
        lambda: npz_of(y_train=npy_header((50_000_000,), "<i8")),
        422,
        "header says",
        "",
    ),
    # .npz: sizes and counts
    (
        "npz-too-many-samples",
        "d.npz",
        lambda: npz_of(
            x_train=np.zeros((600, 4, 4), np.uint8),
            y_train=np.arange(600) % 3,
            x_test=np.zeros((30, 4, 4), np.uint8),
        ),
        413,
        "UPLOAD_MAX_SAMPLES",
        "tight",
    ),
    (
        "npz-decoded-too-large",
        "d.npz",
        lambda: npz_of(
            x_train=np.zeros((30, 3, 160, 160), np.uint8),
            y_train=np.arange(30) % 3,
            x_test=np.zeros((3, 3, 160, 160), np.uint8),
            y_test=np.arange(3),
        ),
        413,
        "UPLOAD_MAX_DECODED_BYTES",
        "tight",
    ),
    ("npz-bomb", "d.npz", bomb_npz, 422, "zip bomb", ""),
    (
        "npz-image-too-big",
        "d.npz",
        lambda: npz_of(x_train=np.zeros((1, 2048, 2048), np.uint8), y_train=np.zeros(1, int)),
        422,
        "px",
        "",
    ),
    # .npz: values and types
    (
        "npz-nan-images",
        "d.npz",
        lambda: npz_of(x_train=np.full((60, 8, 8), np.nan, np.float32)),
        422,
        "NaN",
        "",
    ),
    (
        "npz-inf-test-images",
        "d.npz",
        lambda: npz_of(x_test=np.full((30, 8, 8), np.inf)),
        422,
        "infinite",
        "",
    ),
    (
        "npz-pickled-object",
        "d.npz",
        lambda: npz_of(x_train=np.array([object()] * 60, dtype=object)),
        422,
        "pickle",
        "",
    ),
    (
        "npz-structured-dtype",
        "d.npz",
        lambda: npz_of(x_train=np.zeros(60, dtype=[("a", "u1"), ("b", "f4")])),
        422,
        "structured",
        "",
    ),
    (
        "npz-complex-images",
        "d.npz",
        lambda: npz_of(x_train=np.zeros((60, 8, 8), complex)),
        422,
        "dtype",
        "",
    ),
    ("npz-string-labels", "d.npz", lambda: npz_of(y_train=np.array(["a"] * 60)), 422, "labels", ""),
    (
        "npz-empty-labels",
        "d.npz",
        lambda: npz_of(x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, int)),
        422,
        "no images",
        "",
    ),
    ("npz-scalar-labels", "d.npz", lambda: npz_of(y_train=np.array(1)), 422, "labels", ""),
    ("npz-2d-labels", "d.npz", lambda: npz_of(y_train=np.zeros((60, 2), int)), 422, "shape", ""),
    ("npz-label-count", "d.npz", lambda: npz_of(y_test=np.zeros(5, int)), 422, "labels for", ""),
    (
        "npz-label-1e9",
        "d.npz",
        lambda: npz_of(y_train=np.where(np.arange(60) % 2, 10**9, 0)),
        422,
        "classes",
        "",
    ),
    (
        "npz-labels-5-to-14",
        "d.npz",
        lambda: npz_of(y_train=np.arange(60) % 10 + 5, y_test=np.arange(30) % 10 + 5),
        422,
        "0..K-1",
        "",
    ),
    (
        "npz-negative-labels",
        "d.npz",
        lambda: npz_of(y_train=np.arange(60) % 3 - 1),
        422,
        "label -1",
        "",
    ),
    (
        "npz-nan-labels",
        "d.npz",
        lambda: npz_of(y_train=np.full(60, np.nan)),
        422,
        "non-integer",
        "",
    ),
    (
        "npz-num-classes-empty",
        "d.npz",
        lambda: npz_of(num_classes=np.zeros(0, int)),
        422,
        "num_classes",
        "",
    ),
    (
        "npz-num-classes-huge",
        "d.npz",
        lambda: npz_of(num_classes=np.array(10**9)),
        422,
        "classes",
        "",
    ),
    (
        "npz-num-classes-float",
        "d.npz",
        lambda: npz_of(num_classes=np.array(3.5)),
        422,
        "num_classes",
        "",
    ),
    (
        "npz-too-many-classes",
        "d.npz",
        lambda: npz_of(y_train=np.arange(60), y_test=np.arange(30)),
        422,
        "UPLOAD_MAX_CLASSES",
        "tight",
    ),
    (
        "npz-class-names-object",
        "d.npz",
        lambda: npz_of(class_names=np.array([1, "a", None], dtype=object)),
        422,
        "pickle",
        "",
    ),
    (
        "npz-5d-images",
        "d.npz",
        lambda: npz_of(x_train=np.zeros((60, 1, 1, 8, 8), np.uint8)),
        422,
        "shape",
        "",
    ),
    (
        "npz-zero-channels",
        "d.npz",
        lambda: npz_of(
            x_train=np.zeros((60, 0, 8, 8), np.uint8), x_test=np.zeros((30, 0, 8, 8), np.uint8)
        ),
        422,
        "channels",
        "",
    ),
    # .zip of images: damaged or not images
    (
        "zip-bad-crc",
        "d.zip",
        lambda: flip_byte_in(members_zip({"a/1.png": png(), "b/1.png": png()}), "b/1.png", 20),
        422,
        "readable",
        "",
    ),
    (
        "zip-truncated-png",
        "d.zip",
        lambda: image_zip({"dog/x.png": png()[:40]}),
        422,
        "readable",
        "",
    ),
    (
        "zip-png-header-lies",
        "d.zip",
        lambda: image_zip({"dog/x.png": png_with_header(8, 8)}),
        422,
        "readable",
        "",
    ),
    (
        "zip-png-bomb-header",
        "d.zip",
        lambda: image_zip({"dog/x.png": png_with_header(60_000, 60_000)}),
        422,
        "",
        "",
    ),
    (
        "zip-exe-as-png",
        "d.zip",
        lambda: image_zip({"dog/x.png": b"MZ" + b"\0" * 500}),
        422,
        "readable",
        "",
    ),
    (
        "zip-non-image-entries",
        "d.zip",
        lambda: image_zip(
            {f"cat/blob{i}.bin": np.random.default_rng(i).bytes(1 << 20) for i in range(5)}
        ),
        422,
        "not an image",
        "",
    ),
    (
        "zip-nested-zip",
        "d.zip",
        lambda: image_zip({"cat/inner.zip": image_zip()}),
        422,
        "not an image",
        "",
    ),
    (
        "zip-nan-float-tiff",
        "d.zip",
        lambda: members_zip(
            {
                "train/a/1.tif": float_tiff(np.full((8, 8), np.nan)),
                "train/b/1.tif": float_tiff(np.zeros((8, 8))),
                "test/a/1.tif": float_tiff(np.zeros((8, 8))),
            }
        ),
        422,
        "NaN",
        "",
    ),
    (
        "zip-mixed-sizes",
        "d.zip",
        lambda: image_zip({"dog/x.png": png(size=12)}),
        422,
        "differ in size",
        "",
    ),
    (
        "zip-single-class",
        "d.zip",
        lambda: members_zip({"cat/1.png": png(), "cat/2.png": png()}),
        422,
        "class folder",
        "",
    ),
    (
        "zip-folders-only",
        "d.zip",
        lambda: members_zip({"cat/": b"", "dog/": b""}),
        422,
        "no images",
        "",
    ),
    # .zip: paths and entries that are unsafe
    ("zip-slip", "d.zip", lambda: image_zip({"../../evil.png": png()}), 422, "..", ""),
    ("zip-absolute", "d.zip", lambda: image_zip({"/etc/evil.png": png()}), 422, "absolute", ""),
    ("zip-symlink", "d.zip", lambda: special_entry_zip("symlink"), 422, "link", ""),
    ("zip-encrypted", "d.zip", lambda: special_entry_zip("encrypted"), 422, "encrypted", ""),
    (
        "zip-bomb",
        "d.zip",
        lambda: members_zip({"a/1.png": bytes(20 << 20), "b/1.png": png()}, zipfile.ZIP_DEFLATED),
        422,
        "zip bomb",
        "",
    ),
    # .zip: sizes and counts
    (
        "zip-200-rgb-1024px",
        "d.zip",
        lambda: many_big_pngs(200, 1024),
        413,
        "UPLOAD_MAX_DECODED_BYTES",
        "",
    ),
    (
        "zip-decoded-too-large",
        "d.zip",
        lambda: many_big_pngs(40, 160),
        413,
        "UPLOAD_MAX_DECODED_BYTES",
        "tight",
    ),
    (
        "zip-too-many-images",
        "d.zip",
        lambda: many_big_pngs(600, 4),
        413,
        "UPLOAD_MAX_SAMPLES",
        "tight",
    ),
    # the request itself
    ("unsupported-suffix", "d.tar", lambda: b"\0" * 100, 415, ".npz", ""),
]


@pytest.fixture(scope="module")
def apis(settings, alice):
    """One API with the default limits, one with small ones; both share the database."""
    tight = settings.model_copy(update=TIGHT)
    with TestClient(create_app(settings)) as default, TestClient(create_app(tight)) as small:
        yield {"": Api(default, alice.token), "tight": Api(small, alice.token)}


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak restarts from now


@pytest.mark.parametrize(
    ("filename", "build", "status", "needle", "limits"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_hostile_upload_is_refused(apis, settings, filename, build, status, needle, limits):
    api = apis[limits]
    payload = build()
    upload(api, "warmup.npz", b"")  # creates the incoming folder before the snapshot
    before = snapshot(settings)
    reset_peak_rss()
    baseline = peak_rss_mb()
    response = upload(api, filename, payload)
    growth = peak_rss_mb() - baseline
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    assert needle.lower() in detail.lower(), detail
    assert snapshot(settings) == before
    assert growth < RSS_GROWTH_BOUND_MB, f"peak RSS grew {growth:.0f} MB"


def test_corpus_is_large_and_every_case_distinct():
    assert len(CASES) >= 46
    assert len({case[0] for case in CASES}) == len(CASES)


def test_the_valid_twin_of_the_corpus_is_accepted(apis):
    """The builders make valid files when nothing hostile is added (so each refusal
    above is due to its one change)."""
    api = apis["tight"]
    for filename, data in (("ok.npz", npz_of()), ("ok.zip", image_zip()), ("ok2.npz", tiny_npz())):
        response = upload(api, filename, data, name="mine")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "mine" and body["info"]["name"] == "mine"
        assert api.delete(f"/datasets/{body['id']}").status_code == 204
