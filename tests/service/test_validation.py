"""422 answers name the field and, where there is a choice, the allowed values."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.service


def errors_of(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def error_at(response, *loc: str) -> str:
    for error in errors_of(response):
        if tuple(error["loc"][1:]) == loc:
            return error["msg"]
    raise AssertionError(f"no error at {loc}: {response.json()}")


def test_unknown_arch_lists_the_archs(alice):
    response = alice.post("/jobs", json={"model": {"arch": "vgg99"}, "data": {"dataset": "digits"}})
    message = error_at(response, "model", "arch")
    assert "vgg99" in message
    for arch in ("fcn", "vgg16", "resnet20", "simplevit", "tv:"):
        assert arch in message


def test_unknown_dataset_lists_the_datasets(alice):
    response = alice.post("/jobs", json={"model": {"arch": "fcn"}, "data": {"dataset": "imagenet"}})
    message = error_at(response, "data", "dataset")
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "upload:ID"):
        assert name in message


def test_impossible_values_and_unknown_keys(alice):
    spec = {
        "model": {"arch": "fcn"},
        "data": {"dataset": "digits"},
        "lorita": {"factor": 0},
        "train": {"epochs": 0, "optimizer": "rmsprop", "epoch": 3},
    }
    response = alice.post("/jobs", json=spec)
    assert "greater than or equal to 1" in error_at(response, "lorita", "factor")
    assert "greater than or equal to 1" in error_at(response, "train", "epochs")
    optimizer = error_at(response, "train", "optimizer")
    assert "'sgd'" in optimizer and "'adam'" in optimizer and "'adamw'" in optimizer
    assert "Extra inputs are not permitted" in error_at(response, "train", "epoch")
    missing = alice.post("/jobs", json={"model": {"arch": "fcn"}})
    assert error_at(missing, "data") == "Field required"


def test_server_paths_and_foreign_uploads_are_refused(alice, bob):
    path = alice.post("/jobs", json={"model": {"arch": "fcn"}, "data": {"dataset": "/etc/x.npz"}})
    assert "upload" in error_at(path, "data", "dataset")
    unknown = "upload:00000000-0000-0000-0000-000000000000"
    foreign = alice.post("/jobs", json={"model": {"arch": "fcn"}, "data": {"dataset": unknown}})
    assert "no uploaded dataset" in error_at(foreign, "data", "dataset")


def test_list_filter_values(alice):
    response = alice.get("/jobs", params={"status": "done"})
    assert "queued" in error_at(response, "status")
    assert alice.get("/jobs", params={"limit": 0}).status_code == 422
