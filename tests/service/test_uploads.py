"""Dataset uploads: validated before they are kept; a rejected upload leaves no trace."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from store.db import session_scope
from store.models import Dataset

from .conftest import Api

pytestmark = pytest.mark.service


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def tiny_npz(num_classes: int = 3, n: int = 60, **overrides) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8),
        "y_train": np.arange(n) % num_classes,
        "x_test": rng.integers(0, 256, (n // 2, 8, 8), dtype=np.uint8),
        "y_test": np.arange(n // 2) % num_classes,
    }
    arrays.update(overrides)
    return npz_bytes(**arrays)


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("cats/link.png")
        link.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
        archive.writestr(link, "/etc/passwd")
        archive.writestr("dogs/a.png", b"x")
    return buffer.getvalue()


def upload(api: Api, filename: str, data: bytes, name: str | None = None):
    form = {"name": name} if name else None
    return api.post("/datasets", files={"file": (filename, data)}, data=form)


def snapshot(settings) -> tuple[set, int]:
    files = {p.relative_to(settings.dataset_dir) for p in settings.dataset_dir.rglob("*")}
    with session_scope(settings) as session:
        rows = session.scalar(select(func.count()).select_from(Dataset))
    return files, rows


def test_valid_npz_is_listed_usable_and_deletable(alice, bob, settings):
    response = upload(alice, "tiny.npz", tiny_npz(), name="Tiny set")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["reference"] == f"upload:{body['id']}" and body["kind"] == "npz"
    assert body["name"] == "Tiny set" and body["filename"] == "tiny.npz"
    assert body["info"]["num_classes"] == 3 and body["info"]["image_size"] == 8
    assert (settings.dataset_dir / f"{body['id']}.npz").is_file()

    listed = alice.get("/datasets").json()
    assert [d["id"] for d in listed if d["builtin"]][:2] == ["digits", "mnist"]
    assert body["id"] in {d["id"] for d in listed}
    assert body["id"] not in {d["id"] for d in bob.get("/datasets").json()}
    assert bob.get(f"/datasets/{body['id']}").status_code == 404

    # Only the owner may train on it.
    spec = {"model": {"arch": "fcn"}, "data": {"dataset": body["reference"]}}
    refused = bob.post("/jobs", json=spec)
    assert refused.status_code == 422 and "no uploaded dataset" in refused.text

    assert bob.delete(f"/datasets/{body['id']}").status_code == 404
    assert alice.delete(f"/datasets/{body['id']}").status_code == 204
    assert not (settings.dataset_dir / f"{body['id']}.npz").exists()
    assert alice.get(f"/datasets/{body['id']}").status_code == 404


def test_raw_body_upload(alice):
    response = alice.post(
        "/datasets?filename=raw.npz", content=tiny_npz(), headers={"Content-Type": "x/y"}
    )
    assert response.status_code == 201, response.text
    assert alice.delete(f"/datasets/{response.json()['id']}").status_code == 204


REJECTIONS = [
    ("not a zip", "data.zip", b"this is not a zip archive", 422, "zip"),
    ("zip slip", "data.zip", zip_bytes({"../../evil.png": b"x", "a/b.png": b"x"}), 422, ".."),
    (
        "absolute path",
        "data.zip",
        zip_bytes({"/etc/evil.png": b"x", "a/b.png": b"x"}),
        422,
        "",
    ),
    ("symlink", "data.zip", symlink_zip(), 422, "link"),
    ("not an npz", "data.npz", b"PK\x03\x04 broken", 422, ""),
    (
        "wrong shapes",
        "data.npz",
        tiny_npz(x_train=np.zeros((60,), dtype=np.uint8)),
        422,
        "x_train has shape",
    ),
    (
        "labels out of range",
        "data.npz",
        npz_bytes(
            x_train=np.zeros((6, 8, 8), np.uint8),
            y_train=np.array([0, 1, 0, 1, 0, 1]),
            x_test=np.zeros((2, 8, 8), np.uint8),
            y_test=np.array([0, 7]),
            num_classes=np.array(2),
        ),
        422,
        "label 7",
    ),
    ("negative labels", "data.npz", tiny_npz(y_train=np.arange(60) % 3 - 1), 422, "label -1"),
    ("label count", "data.npz", tiny_npz(y_test=np.zeros(5, int)), 422, "labels for"),
    ("unsupported type", "data.csv", b"1,2,3\n", 415, ".npz"),
]


@pytest.mark.parametrize(
    ("filename", "data", "status", "needle"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_rejected_upload_writes_nothing(alice, settings, filename, data, status, needle):
    upload(alice, "warmup.npz", b"")  # creates the incoming folder before the snapshot
    before = snapshot(settings)
    response = upload(alice, filename, data)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    assert needle.lower() in detail.lower()
    assert snapshot(settings) == before


def test_oversized_upload_is_refused_while_streaming(settings, alice):
    small = settings.model_copy(update={"upload_max_bytes": 2048})
    with TestClient(create_app(small)) as client:
        api = Api(client, alice.token)
        upload(api, "warmup.npz", b"")
        before = snapshot(settings)
        response = upload(api, "big.npz", tiny_npz(n=600))
        assert response.status_code == 413
        assert "2048 bytes" in response.json()["detail"]

        def chunks():  # no Content-Length: only the streaming count can stop it
            for _ in range(64):
                yield b"\0" * 1024

        streamed = client.post(
            "/api/v1/datasets?filename=big.npz", content=chunks(), headers=api.headers
        )
        assert streamed.status_code == 413
        assert snapshot(settings) == before


def test_zip_bomb_is_refused(settings, alice):
    small = settings.model_copy(update={"upload_max_uncompressed_bytes": 100_000})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats/a.png", b"\0" * 5_000_000)
        archive.writestr("dogs/b.png", b"\0" * 10)
    with TestClient(create_app(small)) as client:
        api = Api(client, alice.token)
        upload(api, "warmup.npz", b"")
        before = snapshot(settings)
        response = upload(api, "bomb.zip", buffer.getvalue())
        assert response.status_code == 422, response.text
        assert snapshot(settings) == before


def test_builtins_are_listed_with_their_facts_and_presence(alice, settings):
    from core.data.layout import builtin_present

    listed = {d["id"]: d for d in alice.get("/datasets").json() if d["builtin"]}
    assert list(listed) == ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100"]
    fashion = listed["fashion-mnist"]
    assert fashion["info"]["num_classes"] == 10 and fashion["info"]["in_channels"] == 1
    assert fashion["info"]["image_size"] == 28
    assert (fashion["info"]["num_train"], fashion["info"]["num_test"]) == (60_000, 10_000)
    assert fashion["info"]["class_names"][0] == "T-shirt/top"
    assert listed["cifar100"]["info"]["num_classes"] == 100
    assert "dataset-fashion-mnist" in fashion["source"]
    assert "internet" in listed["cifar10"]["source"]
    assert listed["digits"]["present"] is True  # ships with scikit-learn
    for name, item in listed.items():
        assert item["present"] is builtin_present(name, settings.data_dir), name
