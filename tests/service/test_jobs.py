"""Jobs end to end on PostgreSQL + Redis with a real Celery worker process."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from store.artifacts import artifact_store

from .conftest import QUICK_SPEC, Api
from .test_uploads import tiny_npz, upload

# The FCN recipe fine-tunes the truncated model for 3 epochs after the rank search.
# The FCN default fine-tunes the truncated model for 3 epochs at each of two rates.
FINETUNE = [(f"finetune at {rate}x lr", epoch) for rate in ("0.1", "1") for epoch in (1, 2, 3)]

pytestmark = [pytest.mark.service, pytest.mark.slow]

ARTIFACTS = [
    "MODEL_CARD.md",
    "lowrank.json",
    "lowrank.safetensors",
    "model.onnx",
    "model.safetensors",
    "report.json",
]
LONG_SPEC = {
    "model": {"arch": "fcn"},
    "data": {"dataset": "digits", "train_subset": 400},
    "train": {"epochs": 300},
}


def download_bundle(api: Api, job: dict, folder, listing: dict):
    """GET artifacts.zip: every artifact, byte for byte, in a folder named after the job."""
    response = api.get(f"/jobs/{job['id']}/artifacts.zip")
    name = f"lorita-{job['id']}"
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{name}.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == [f"{name}/{artifact}" for artifact in ARTIFACTS]
        archive.extractall(folder)
    for artifact in ARTIFACTS:
        single = api.get(listing[artifact]["url"].removeprefix("/api/v1")).content
        assert (folder / name / artifact).read_bytes() == single
    assert "lorita.load_lowrank" in (folder / name / "MODEL_CARD.md").read_text()
    return folder / name


def download_model_and_check_accuracy(api: Api, job: dict, folder) -> float:
    """Load the low-rank model of the downloaded bundle and measure it on the digits test
    images as scikit-learn gives them (the model normalises them itself)."""
    from core.data import read_raw_dataset
    from core.export import load_lowrank
    from core.preprocess import raw_arrays

    folder.mkdir()
    listing = {a["name"]: a for a in api.get(f"/jobs/{job['id']}/artifacts").json()}
    assert sorted(listing) == ARTIFACTS
    assert listing["report.json"]["content_type"] == "application/json"
    assert listing["lowrank.safetensors"]["content_type"] == "application/octet-stream"
    for name in ("lowrank.safetensors", "lowrank.json", "report.json"):
        response = api.get(listing[name]["url"].removeprefix("/api/v1"))
        assert response.status_code == 200
        assert response.headers["content-type"] == listing[name]["content_type"]
        assert int(response.headers["content-length"]) == listing[name]["size_bytes"]
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        (folder / name).write_bytes(response.content)
    # Interrupted downloads resume (Range); clients can tell a changed file (ETag).
    url = listing["lowrank.safetensors"]["url"].removeprefix("/api/v1")
    whole = (folder / "lowrank.safetensors").read_bytes()
    part = api.get(url, headers={"Range": "bytes=8-15"})
    assert part.status_code == 206 and part.content == whole[8:16]
    assert part.headers["content-range"] == f"bytes 8-15/{len(whole)}"
    assert api.get(url).headers["etag"]

    torch.set_num_threads(2)
    unpacked = download_bundle(api, job, folder / "bundle", listing)
    model = load_lowrank(unpacked)
    x, y = raw_arrays(read_raw_dataset("digits"), "test")
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predicted == y).mean())


def submit_job_with_bad_data(api: Api, settings) -> tuple[str, str]:
    """A job whose uploaded file disappeared behind the service's back (disk cleaned,
    volume lost): it passes submission and fails in the worker."""
    dataset = upload(api, "vanishing.npz", tiny_npz()).json()
    (settings.dataset_dir / f"{dataset['id']}.npz").unlink()
    spec = {"model": {"arch": "fcn"}, "data": {"dataset": dataset["reference"]}}
    return api.submit(spec), dataset["reference"]


def test_bad_job_fails_clearly_then_a_full_job_runs_through_http(alice, worker, tmp_path, settings):
    # The bad job goes first: the same worker must survive it and run the next one.
    bad_id, reference = submit_job_with_bad_data(alice, settings)
    spec = {**QUICK_SPEC, "train": {"epochs": 2}}
    job_id = alice.submit(spec)

    bad = alice.wait_final(bad_id)
    assert bad["status"] == "failed" and bad["failure_kind"] == "data"
    assert reference in bad["failure_reason"] and "Upload it again" in bad["failure_reason"]
    no_bundle = alice.get(f"/jobs/{bad_id}/artifacts.zip")
    assert no_bundle.status_code == 409 and "failed" in no_bundle.json()["detail"]

    events = alice.events(job_id)  # streams until the job is final
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    states = [e["data"]["status"] for e in events if e["event"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    epochs = [e["data"] for e in events if e["event"] == "epoch"]
    # Two training epochs, then the FCN default: 3 epochs fine-tuning the truncated model
    # at each rate.
    assert [(e["run"], e["epoch"]) for e in epochs] == [("lorita", 1), ("lorita", 2), *FINETUNE]
    assert {"stage", "batch"} <= {e["event"] for e in events}

    # Resuming with Last-Event-ID sends only what came after it.
    tail = alice.events(job_id, last_event_id=ids[-3])
    assert [int(e["id"]) for e in tail] == ids[-2:]

    job = alice.job(job_id)
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["stage"] == "done"
    assert job["worker"].startswith("lorita-") and job["attempts"] == 1
    assert job["worker"] == bad["worker"] and worker.process.poll() is None
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    result = job["result"]
    assert result["params"]["compressed"] < result["params"]["uncompressed"]
    assert set(result["artifacts"]) == set(ARTIFACTS)

    metrics = alice.get(f"/jobs/{job_id}/metrics").json()
    runs = [(m["run"], m["epoch"]) for m in metrics["epochs"]]
    assert runs == [("lorita", 1), ("lorita", 2), *FINETUNE]
    assert all(m["train_loss"] > 0 and m["lr"] is not None for m in metrics["epochs"])
    assert metrics["compression"]["accuracy"] == result["accuracy"]

    accuracy = download_model_and_check_accuracy(alice, job, tmp_path / "model")
    one_sample = 1 / 360  # the digits test split
    assert accuracy == pytest.approx(result["accuracy"]["compressed"], abs=one_sample)

    listed = alice.get("/jobs", params={"status": "succeeded", "arch": "fcn", "limit": 1}).json()
    assert listed["limit"] == 1 and len(listed["items"]) == 1 and listed["total"] >= 1
    assert job_id in {
        j["id"] for j in alice.get("/jobs", params={"dataset": "digits"}).json()["items"]
    }
    assert alice.get("/jobs", params={"arch": "vgg16"}).json()["total"] == 0

    # Delete removes the rows and the files.
    job_dir = artifact_store(settings).job_dir(job_id)
    assert job_dir.is_dir()
    assert alice.delete(f"/jobs/{job_id}").status_code == 204
    assert alice.get(f"/jobs/{job_id}").status_code == 404
    assert not job_dir.exists()


def test_cancel_queued_and_running_jobs_then_retry(alice, worker, settings):
    running_id = alice.submit(LONG_SPEC)
    queued_id = alice.submit(LONG_SPEC)  # waits behind the first: one job per worker
    alice.wait_for(
        running_id,
        lambda j: j["status"] == "running" and j["progress"] > 0.001,
        what="training to start",
    )

    cancelled_now = alice.post(f"/jobs/{queued_id}/cancel")
    assert cancelled_now.status_code == 200
    assert cancelled_now.json()["status"] == "cancelled"

    asked = alice.post(f"/jobs/{running_id}/cancel")
    assert asked.status_code == 202
    assert asked.json()["status"] == "running" and asked.json()["cancel_requested"]
    job = alice.wait_final(running_id, timeout=15)
    assert job["status"] == "cancelled" and job["finished_at"]
    assert job["failure_reason"] is None
    assert not (artifact_store(settings).job_dir(running_id) / "checkpoints").exists()
    assert alice.post(f"/jobs/{running_id}/cancel").status_code == 409

    retried = alice.post(f"/jobs/{running_id}/retry")
    assert retried.status_code == 201
    new = alice.job(retried.json()["id"])
    assert new["retry_of"] == running_id and new["spec"] == job["spec"]
    assert alice.post(f"/jobs/{new['id']}/retry").status_code == 409
    alice.post(f"/jobs/{new['id']}/cancel")
    assert alice.wait_final(new["id"], timeout=15)["status"] == "cancelled"
