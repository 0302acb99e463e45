"""The dashboard's HTTP side without a browser: pages, static files, its JSON endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.dashboard.routes import plotly_bundle
from api.main import create_app
from store.db import dispose_engines, session_scope
from store.jobs import create_job
from store.tokens import create_token, get_or_create_user, verify_token
from tests.local_state import local_settings

PAGES = ("/", "/signin", "/jobs/new", "/jobs/0b5f6c1e-0000-4000-8000-000000000000", "/datasets")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = local_settings(tmp_path_factory.mktemp("dashboard-routes"))
    with TestClient(create_app(settings)) as client:
        with session_scope(settings) as session:
            client.token = create_token(session, "routes")
        yield client
    dispose_engines()


@pytest.mark.parametrize("path", [*PAGES, "/compare"])
def test_pages_are_html_shells_with_a_strict_policy(client: TestClient, path: str):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert '<main id="main"' in response.text
    # Every script is a file of the app itself: nothing from another origin.
    assert "http://" not in response.text and "https://" not in response.text


def test_chart_pages_load_plotly_from_the_installed_package(client: TestClient):
    path, version = plotly_bundle()
    page = client.get("/compare").text
    url = f"/static/vendor/plotly-{version}.min.js"
    assert url in page
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "immutable" in response.headers["cache-control"]
    assert len(response.content) == path.stat().st_size
    assert client.get("/static/vendor/plotly-0.0.0.min.js").status_code == 404


def test_own_static_files_are_served_with_module_friendly_types(client: TestClient):
    script = client.get("/static/js/pages/jobs.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/css/app.css").headers["content-type"].startswith("text/css")
    assert client.head("/static/css/app.css").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/../routes.py",
        "/static/%2e%2e/routes.py",
        "/static/..%2Froutes.py",
        "/static/js/../../pages.py",
        "/static/missing.js",
        "/static/js",
    ],
)
def test_static_files_never_leave_their_folder(client: TestClient, path: str):
    response = client.get(path)
    assert response.status_code == 404
    assert "Page" not in response.text  # no Python source came back


def test_dashboard_endpoints_need_a_signed_in_user(client: TestClient):
    assert client.get("/dashboard/api/options").status_code == 401
    assert client.get("/api/v1/jobs").status_code == 401


def test_the_job_list_has_one_endpoint(client: TestClient):
    headers = {"Authorization": f"Bearer {client.token}"}
    # The pages read GET /api/v1/jobs; the former dashboard-only copy is gone.
    assert client.get("/dashboard/api/jobs", headers=headers).status_code == 404


def test_options_give_the_recipe_defaults_for_the_form(client: TestClient):
    response = client.get(
        "/dashboard/api/options", headers={"Authorization": f"Bearer {client.token}"}
    )
    assert response.status_code == 200
    options = response.json()
    assert "fcn" in options["archs"]
    assert options["recipes"]["fcn"]["lr"] > 0
    assert options["torchvision_recipe"]["epochs"] >= 1
    # What a job does after truncation when the form leaves it blank, per family.
    assert (
        options["recipes"]["fcn"]["finetune_epochs"],
        options["recipes"]["fcn"]["finetune_search"],
    ) == (3, False)
    resnet = options["recipes"]["resnet20"]
    assert (resnet["finetune_epochs"], resnet["finetune_search"]) == (1, True)
    # The form's blank tolerance means the spec default: it shows it, in its own unit.
    assert options["defaults"]["compress.max_accuracy_drop"] == 0.005


def test_job_rows_carry_their_factor_and_result_numbers(client: TestClient):
    headers = {"Authorization": f"Bearer {client.token}"}
    settings = client.app.state.settings
    # Rows written straight to the database: the row shape is under test, not the queue.
    with session_scope(settings) as session:
        user = verify_token(session, client.token)
        spec = {"model": {"arch": "fcn"}, "data": {"dataset": "digits"}, "lorita": {"factor": 4}}
        done = create_job(session, user.id, spec, queue="lorita")
        done.status = "succeeded"
        done.result = {
            "accuracy": {"uncompressed": 0.97, "compressed": 0.96},
            "params": {"uncompressed": 1000, "compressed": 100},
            "flops": {"uncompressed": 2000, "compressed": 300},
            "layers": {"big": {"singular_values": [1.0] * 100}},
        }
        create_job(session, user.id, {**spec, "model": {"arch": "vgg11"}}, queue="lorita")
        chance = create_job(session, user.id, {**spec, "baseline": True}, queue="lorita")
        chance.status = "succeeded"
        chance.spec = {**spec, "model": {"arch": "resnet20"}, "baseline": True}
        chance.arch = "resnet20"
        warning = {"kind": "did_not_learn", "message": "10.0% is chance", "advice": "more epochs"}
        chance.result = {
            **done.result,
            "accuracy": {"uncompressed": 0.1, "compressed": 0.097},
            "baseline": {"accuracy": {"uncompressed": 0.98, "compressed": 0.95}},
            "warnings": [warning],
        }
        other = get_or_create_user(session, "someone-else")
        create_job(session, other.id, spec, queue="lorita")

    rows = client.get("/api/v1/jobs", headers=headers).json()
    assert rows["total"] == 3  # never another user's jobs
    by_arch = {row["arch"]: row for row in rows["items"]}
    assert by_arch["fcn"]["factor"] == 4
    assert by_arch["fcn"]["baseline"] is False
    assert by_arch["fcn"]["summary"]["params"] == {"uncompressed": 1000, "compressed": 100}
    assert by_arch["fcn"]["summary"]["accuracy"]["compressed"] == 0.96
    assert "layers" not in by_arch["fcn"]["summary"]  # rows stay small
    assert by_arch["vgg11"]["summary"] is None
    assert by_arch["fcn"]["baseline_accuracy"] is None
    assert by_arch["fcn"]["warnings"] is None
    # What the list shows of a job that did not learn and of its plain N=1 model.
    assert by_arch["resnet20"]["warnings"] == [warning]
    assert by_arch["resnet20"]["baseline_accuracy"] == {"uncompressed": 0.98, "compressed": 0.95}

    filtered = client.get("/api/v1/jobs?status=succeeded", headers=headers).json()
    assert sorted(row["arch"] for row in filtered["items"]) == ["fcn", "resnet20"]
    assert client.get("/api/v1/jobs?limit=0", headers=headers).status_code == 422
    unknown = client.get("/api/v1/jobs?status=finished", headers=headers)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["query", "status"]
    assert "succeeded" in unknown.json()["detail"][0]["msg"]  # says what to choose
