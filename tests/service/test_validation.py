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
    unknown = error_at(response, "train", "epoch")
    assert unknown.startswith("unknown field 'epoch'; did you mean 'epochs'? allowed: epochs,")
    assert "batch_size" in unknown and "seed" in unknown
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


def test_unknown_top_level_and_nested_fields_list_the_allowed_names(alice):
    spec = {"model": {"arch": "fcn", "archh": 1}, "data": {"dataset": "digits"}, "compres": {}}
    response = alice.post("/jobs", json=spec)
    top = error_at(response, "compres")
    assert "did you mean 'compress'?" in top and "lorita" in top and "baseline" in top
    nested = error_at(response, "model", "archh")
    assert "did you mean 'arch'?" in nested and "num_classes" in nested
    # Still machine-readable: FastAPI's shape, the type of the error kept.
    assert {e["type"] for e in errors_of(response)} == {"extra_forbidden"}


def test_the_tolerance_is_a_bounded_fraction(alice):
    spec = {"model": {"arch": "fcn"}, "data": {"dataset": "digits"}}
    response = alice.post("/jobs", json={**spec, "compress": {"max_accuracy_drop": 1}})
    message = error_at(response, "compress", "max_accuracy_drop")
    assert message.startswith("a fraction of accuracy: 0.01 means one percentage point")
    assert "for 1 percentage point write 0.01" in message
    assert "Value error" not in response.text
    negative = alice.post("/jobs", json={**spec, "compress": {"max_accuracy_drop": -0.01}})
    assert "0.01 means one percentage point" in error_at(negative, "compress", "max_accuracy_drop")
    accepted = alice.post("/jobs", json={**spec, "compress": {"max_accuracy_drop": 0.2}})
    assert accepted.status_code == 201, accepted.text


def test_dataset_messages_suggest_only_what_the_service_runs(alice):
    response = alice.post(
        "/jobs", json={"model": {"arch": "fcn"}, "data": {"dataset": "fashion_mnist"}}
    )
    message = error_at(response, "data", "dataset")
    assert "did you mean 'fashion-mnist'?" in message and "upload:ID" in message
    assert ".npz" not in message and "path" not in message and "Value error" not in message
