"""The OpenAPI document says what the API answers, and a bounded fuzz run against
it (schemathesis, fixed seed) finds no server error."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from api.main import create_app
from core.catalog import available_datasets, is_known_arch
from store.settings import Settings

from .conftest import make_user_token

# Per operation; about 25 operations make a few hundred cases in all.
FUZZ_EXAMPLES = 12


@pytest.fixture(scope="module")
def fuzz_app(settings, redis_prefix):
    """The API on the test database, publishing to a queue no worker reads: generated
    specs that are valid stay queued instead of training."""
    fuzz_settings = Settings(**{**settings.model_dump(), "queue_name": f"{redis_prefix}fuzz"})
    app = create_app(fuzz_settings)
    with TestClient(app):  # runs the lifespan once
        pass
    return app, make_user_token(fuzz_settings, f"fuzz-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def document(fuzz_app):
    return fuzz_app[0].openapi()


def operation(document, method: str, path: str) -> dict:
    return document["paths"][path][method]


@pytest.mark.parametrize(
    "method, path, codes",
    [
        ("post", "/api/v1/jobs", {"201", "401", "413", "422", "503"}),
        ("get", "/api/v1/jobs", {"200", "401", "422", "503"}),
        ("get", "/api/v1/jobs/{job_id}", {"200", "401", "404", "422", "503"}),
        ("post", "/api/v1/jobs/{job_id}/cancel", {"200", "202", "401", "404", "409", "503"}),
        ("post", "/api/v1/jobs/{job_id}/retry", {"201", "401", "404", "409", "503"}),
        ("delete", "/api/v1/jobs/{job_id}", {"204", "401", "404", "503"}),
        ("get", "/api/v1/jobs/{job_id}/events", {"200", "401", "404", "422", "503"}),
        ("post", "/api/v1/datasets", {"201", "401", "413", "415", "422", "503"}),
        ("post", "/api/v1/session", {"200", "401", "422", "503"}),
        ("get", "/healthz", {"200", "503"}),
    ],
)
def test_every_answer_is_declared(document, method, path, codes):
    declared = set(operation(document, method, path)["responses"])
    assert codes <= declared, codes - declared
    unavailable = operation(document, method, path)["responses"]["503"]
    if path != "/healthz":
        assert "Retry-After" in unavailable["headers"]


def test_catalog_names_are_enums(document):
    schemas = document["components"]["schemas"]
    model = next(schema for name, schema in schemas.items() if name.startswith("ModelSpec"))
    archs = model["properties"]["arch"]["enum"]
    assert "fcn" in archs and "tv:resnet18" in archs
    assert all(is_known_arch(name) for name in archs)
    data = next(schema for name, schema in schemas.items() if name.startswith("DataSpec"))
    choices = data["properties"]["dataset"]["anyOf"]
    assert choices[0]["enum"] == list(available_datasets())
    assert choices[1]["pattern"].startswith("^upload:")
    job = schemas["JobSummary"]["properties"]["status"]
    assert job["enum"] == ["queued", "running", "succeeded", "failed", "cancelled"]


def test_generated_requests_get_no_server_error(fuzz_app):
    """Every operation gets FUZZ_EXAMPLES generated requests (a fixed seed); none may
    answer 5xx. The cases run through the app in-process (ASGI)."""
    app, token = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    cases: list[tuple[str, int]] = []

    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=FUZZ_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            response = case.call(headers=headers)
            cases.append((f"{case.method} {case.formatted_path}", response.status_code))

        run()

    server_errors = [(label, code) for label, code in cases if code >= 500]
    codes = sorted({code for _, code in cases})
    print(f"fuzz: {len(cases)} cases, answers {codes}, 5xx: {len(server_errors)}")
    assert len(cases) >= 200, len(cases)
    assert server_errors == [], server_errors
