"""Uploaded model weights: accepted when they fit the architecture, refused (with the
list of what differs, and nothing written) when they do not or the file is hostile,
private to their owner, deletable, and usable as a job's model.weights."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save as safetensors_bytes

from api.main import create_app
from core.models import build_model
from store.db import session_scope
from store.models import ModelUpload
from store.weights import weights_files

from .conftest import QUICK_SPEC, Api

pytestmark = pytest.mark.service

DIGITS_FORM = {"arch": "fcn", "dataset": "digits"}


def _fcn_bytes() -> bytes:
    """An FCN for the 8x8 digits as `save_file(model.state_dict())` writes it."""
    torch.manual_seed(0)
    state = build_model("fcn", 10, 1, 8).state_dict()
    return safetensors_bytes({k: v.contiguous() for k, v in state.items()})


def _raw_safetensors(header: dict, data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def _upload(api: Api, content: bytes, form: dict, filename: str = "model.safetensors"):
    files = {"file": (filename, content, "application/octet-stream")}
    return api.post("/models", files=files, data=form)


def _stored_files(settings) -> list[Path]:
    """Every file under the weights folder, temporary ones included."""
    root = weights_files(settings).root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _rows(settings) -> int:
    with session_scope(settings) as session:
        return session.query(ModelUpload).count()


def test_upload_list_get_and_delete(alice, bob, settings):
    response = _upload(alice, _fcn_bytes(), {**DIGITS_FORM, "name": "my digits fcn"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["reference"] == f"upload:{body['id']}"
    assert (body["arch"], body["num_classes"], body["in_channels"], body["image_size"]) == (
        "fcn",
        10,
        1,
        8,
    )
    assert body["name"] == "my digits fcn" and body["shape_check"] == "checked"
    expected = build_model("fcn", 10, 1, 8).state_dict()
    assert body["tensor_count"] == len(expected)
    assert body["parameter_count"] == sum(
        math.prod(v.shape) for v in expected.values() if v.is_floating_point()
    )
    path = weights_files(settings).path(body["id"])
    assert path.is_file() and path.stat().st_size == body["size_bytes"]

    assert body["id"] in [m["id"] for m in alice.get("/models").json()]
    assert alice.get(f"/models/{body['id']}").json()["reference"] == body["reference"]
    # Someone else's upload does not exist for bob: not listed, 404 to read or delete.
    assert body["id"] not in [m["id"] for m in bob.get("/models").json()]
    assert bob.get(f"/models/{body['id']}").status_code == 404
    assert bob.delete(f"/models/{body['id']}").status_code == 404
    assert path.is_file()

    assert alice.delete(f"/models/{body['id']}").status_code == 204
    assert not path.exists()
    assert alice.get(f"/models/{body['id']}").status_code == 404


def test_explicit_shapes_instead_of_a_dataset(alice):
    form = {"arch": "fcn", "num_classes": "10", "in_channels": "1", "image_size": "8"}
    response = _upload(alice, _fcn_bytes(), form)
    assert response.status_code == 201, response.text
    missing = _upload(alice, _fcn_bytes(), {"arch": "fcn", "num_classes": "10"})
    assert missing.status_code == 422
    assert "in_channels, image_size" in missing.json()["detail"]


def test_wrong_architecture_is_refused_with_the_mismatch_list(alice, settings):
    before_files, before_rows = _stored_files(settings), _rows(settings)
    response = _upload(alice, _fcn_bytes(), {"arch": "resnet20", "dataset": "digits"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"].startswith("the weights do not fit resnet20: missing: conv1.weight")
    assert "conv1.weight" in body["missing"] and "layers.0.weight" in body["unexpected"]
    assert body["unexpected"]["layers.0.weight"] == [500, 64]
    # The same architecture built for other data: only the shapes differ.
    other = _upload(alice, _fcn_bytes(), {"arch": "fcn", "dataset": "mnist"})
    assert other.status_code == 422
    wrong = other.json()["wrong_shape"]
    assert wrong["layers.0.weight"] == {"found": [500, 64], "expected": [500, 784]}
    assert not other.json()["missing"] and not other.json()["unexpected"]
    assert _stored_files(settings) == before_files and _rows(settings) == before_rows


def _hostile_files() -> dict[str, tuple[str, bytes, int, str]]:
    good = _fcn_bytes()
    nan = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    return {
        "pickle": ("model.pt", b"\x80\x04\x95" + b"\x00" * 64, 415, "never opened"),
        "not safetensors": ("model.safetensors", b"PK\x03\x04" * 64, 422, "header claims"),
        "short": ("model.safetensors", b"\x01\x02", 422, "too short"),
        "header not json": ("model.safetensors", struct.pack("<Q", 4) + b"{{{{", 422, "JSON"),
        "truncated": ("model.safetensors", good[: len(good) // 2], 422, "truncated"),
        "overlap": (
            "model.safetensors",
            _raw_safetensors(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\x00" * 12,
            ),
            422,
            "overlaps",
        ),
        "code dtype": (
            "model.safetensors",
            _raw_safetensors(
                {"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}, b"x" * 4
            ),
            422,
            "dtype",
        ),
        "nan": (
            "model.safetensors",
            _raw_safetensors(nan, struct.pack("<ff", 1.0, float("nan"))),
            422,
            "NaN",
        ),
    }


@pytest.mark.parametrize("case", list(_hostile_files()))
def test_hostile_files_are_refused_and_nothing_is_written(alice, settings, case):
    filename, content, code, message = _hostile_files()[case]
    before_files, before_rows = _stored_files(settings), _rows(settings)
    response = _upload(alice, content, DIGITS_FORM, filename)
    assert response.status_code == code, response.text
    assert message in response.json()["detail"]
    assert _stored_files(settings) == before_files and _rows(settings) == before_rows


def test_an_upload_over_the_limit_is_refused_while_streaming(alice, settings):
    small = settings.model_copy(update={"upload_max_bytes": 1000})
    before_files = _stored_files(settings)
    with TestClient(create_app(small)) as client:
        api = Api(client, alice.token)
        response = _upload(api, _fcn_bytes(), DIGITS_FORM)
    assert response.status_code == 413
    assert _stored_files(settings) == before_files


def test_a_job_uses_uploaded_weights(alice, bob, worker):
    upload = _upload(alice, _fcn_bytes(), DIGITS_FORM).json()
    spec = {**QUICK_SPEC, "model": {"arch": "fcn", "weights": upload["reference"]}}
    # Someone else's weights, or weights for another architecture, are refused at once.
    assert bob.post("/jobs", json=spec).status_code == 422
    other = {**spec, "model": {"arch": "vgg11", "weights": upload["reference"]}}
    refused = alice.post("/jobs", json=other)
    assert refused.status_code == 422 and "are for fcn" in refused.text
    paths = {**spec, "model": {"arch": "fcn", "weights": "/etc/model.safetensors"}}
    assert alice.post("/jobs", json=paths).status_code == 422

    job = alice.wait_final(alice.submit(spec), timeout=300)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["recipe"]["name"] == "from pretrained"
    pretrained = result["pretrained"]
    assert pretrained["weights"] == upload["reference"]
    assert pretrained["warm_start_accuracy"] == pretrained["accuracy"]
    assert pretrained["plain_truncation"]["params"] < pretrained["params"]
