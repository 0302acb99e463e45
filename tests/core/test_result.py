"""The typed Result: report.json is its JSON, the API serves it as stored, OpenAPI shows it."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from core.pipeline import run_job
from core.result import Result, ResultMetrics, ResultSummary, Section
from core.spec import JobSpec

SPEC = {
    "model": {"arch": "fcn"},
    "data": {"dataset": "digits", "val_fraction": 0.25, "train_subset": 400},
    "lorita": {"factor": 2},
    "train": {"epochs": 2, "seed": 0},
    # Fine-tuning and the baseline on: every optional part of the Result is filled.
    "compress": {"finetune_epochs": 1},
    "baseline": True,
}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    out = tmp_path_factory.mktemp("result-job")
    return run_job(JobSpec.model_validate(SPEC), out, device="cpu"), out / "report.json"


def _sections(model: BaseModel) -> Iterator[BaseModel]:
    yield model
    for value in model.__dict__.values():
        items = value.values() if isinstance(value, dict) else value
        for item in items if isinstance(value, (dict, list)) else [value]:
            if isinstance(item, BaseModel):
                yield from _sections(item)


def test_report_json_is_the_result(job):
    result, report = job
    text = report.read_text()
    assert Result.model_validate_json(text) == result
    assert json.loads(text) == result.model_dump(mode="json")
    assert Result.model_validate(json.loads(result.model_dump_json())) == result


def test_the_pipeline_writes_only_keys_the_model_declares(job):
    """The model reads unknown keys tolerantly; the pipeline itself must not produce
    any, or a misspelt key would slip past the schema."""
    result, _ = job
    for section in _sections(result):
        assert not section.model_extra, (type(section).__name__, section.model_extra)
    assert result.baseline is not None and result.finetune_history
    assert result.baseline.finetune_history  # one block builder for both models
    assert result.history[-1].run == "lorita"
    assert result.finetune_history[0].run == f"finetune at {result.finetune_lr_scale:g}x lr"


def test_parts_that_did_not_run_are_absent_not_null(job):
    result, _ = job
    stored = result.model_dump(mode="json")
    for key in ("baseline", "finetune_history"):
        del stored[key]
    document = Result.model_validate(stored).model_dump(mode="json")
    assert "baseline" not in document and "finetune_history" not in document
    # A required but empty value stays: null test accuracy of the points not tested.
    assert any(point["test_accuracy"] is None for point in document["curve"])


def test_results_stored_by_other_versions_are_served_as_stored(job):
    result, _ = job
    stored = result.model_dump(mode="json")
    stored["from_a_newer_version"] = {"accuracy": 0.5}
    stored["chosen"]["rank_total"] = 42
    stored["history"][0]["val_loss"] = None  # a non-finite loss is stored as null
    read = Result.model_validate(stored)
    assert read.model_dump(mode="json") == stored


def test_digests_are_typed_like_the_result(job):
    result, _ = job
    for digest in (ResultSummary, ResultMetrics):
        for name, field in digest.model_fields.items():
            expected = Result.model_fields[name].annotation
            assert field.annotation in (expected, expected | None), (digest, name)
    stored = result.model_dump(mode="json")
    assert result.summary().model_dump(mode="json") == {
        key: stored[key] for key in ResultSummary.model_fields
    }
    assert result.metrics().model_dump(mode="json") == {
        key: stored[key] for key in ResultMetrics.model_fields
    }
    # A list row's summary can come from a partial stored result.
    assert ResultSummary.model_validate(
        {key: stored[key] for key in ("accuracy", "params", "flops")}
    )


def test_every_part_is_tolerant():
    def parts(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
        yield model
        for field in model.model_fields.values():
            for arg in _flat_args(field.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    yield from parts(arg)

    for part in parts(Result):
        assert issubclass(part, Section), part


def _flat_args(annotation) -> Iterator[object]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _flat_args(arg)


# --------------------------------------------------------------- through the API


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from api.main import create_app
    from store.db import dispose_engines, session_scope
    from store.tokens import create_token
    from tests.local_state import local_settings

    settings = local_settings(tmp_path_factory.mktemp("result-api"))
    with TestClient(create_app(settings)) as client:
        with session_scope(settings) as session:
            client.headers["Authorization"] = f"Bearer {create_token(session, 'result')}"
        yield client
    dispose_engines()


def test_the_api_serves_the_stored_result_unchanged(job, client):
    from store import jobs as repo
    from store.db import session_scope
    from store.tokens import get_or_create_user

    result, report = job
    settings = client.app.state.settings
    # Stored as the worker stores it: the Result's JSON in the job row.
    with session_scope(settings) as session:
        user = get_or_create_user(session, "result")
        row = repo.create_job(session, user.id, SPEC, queue="lorita")
        assert repo.claim_job(session, row.id, "test-worker")
        finished = repo.finish_job(
            session,
            row.id,
            "test-worker",
            "succeeded",
            result=result.model_dump(mode="json"),
        )
        assert finished
        job_id = row.id

    detail = client.get(f"/api/v1/jobs/{job_id}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["result"] == json.loads(report.read_text())
    metrics = client.get(f"/api/v1/jobs/{job_id}/metrics")
    assert metrics.status_code == 200, metrics.text
    assert metrics.json()["compression"] == result.metrics().model_dump(mode="json")


def test_openapi_shows_the_typed_result(client):
    schema = client.app.openapi()
    components = schema["components"]["schemas"]

    def target(property_schema: dict) -> dict:
        refs = [option["$ref"] for option in property_schema.get("anyOf", []) if "$ref" in option]
        assert len(refs) == 1, property_schema
        return components[refs[0].rsplit("/", 1)[1]]

    result = target(components["JobDetail"]["properties"]["result"])
    assert result["title"] == "Result"
    assert set(Result.model_fields) <= set(result["properties"])
    accuracy = components[result["properties"]["accuracy"]["$ref"].rsplit("/", 1)[1]]
    assert accuracy["properties"]["uncompressed"]["type"] == "number"
    baseline = target(result["properties"]["baseline"])
    assert {"accuracy", "ranks", "curve", "layers"} <= set(baseline["properties"])
    compression = target(components["JobMetrics"]["properties"]["compression"])
    assert set(compression["properties"]) == set(ResultMetrics.model_fields)
