"""The API process never imports torch: it validates job specs and uploads with the
torch-free catalog (core.catalog) and numpy, so the API image can leave torch out.

The check runs in a fresh interpreter, since the test process itself has usually
imported torch through other tests already.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.service_load import run_python
from tests.local_state import service_env

# The embedded mode on a temporary SQLite state folder: migrate, sign in, submit a job
# (validated and queued on the SQLite broker, no worker needed), upload a dataset,
# use it in a job, read the dashboard's options; then report the modules loaded.
SCRIPT = """
import json, os, sys
from fastapi.testclient import TestClient
from api.main import create_app
from store.db import session_scope
from store.settings import Settings
from store.tokens import create_token

settings = Settings()
out = {}
with TestClient(create_app(settings)) as client:
    with session_scope(settings) as session:
        token = create_token(session, "torch-free", user_name="alice")
    headers = {"Authorization": f"Bearer {token}"}
    api = "/api/v1"
    spec = {"model": {"arch": "tv:resnet18"}, "data": {"dataset": "digits"}}
    out["job"] = client.post(f"{api}/jobs", json=spec, headers=headers).status_code
    bad = {"model": {"arch": "tv:no_such_net"}, "data": {"dataset": "digits"}}
    out["bad_arch"] = client.post(f"{api}/jobs", json=bad, headers=headers).status_code
    with open(os.environ["UPLOAD_FILE"], "rb") as handle:
        files = {"file": ("tiny.npz", handle, "application/octet-stream")}
        upload = client.post(f"{api}/datasets", files=files, headers=headers)
    out["upload"] = upload.status_code
    out["upload_info"] = upload.json().get("info")
    reference = upload.json().get("reference", "")
    spec = {"model": {"arch": "fcn"}, "data": {"dataset": reference}}
    out["upload_job"] = client.post(f"{api}/jobs", json=spec, headers=headers).status_code
    options = client.get("/dashboard/api/options", headers=headers)
    out["options"] = options.status_code
out["modules"] = sorted(
    name for name in ("torch", "torchvision", "sklearn") if name in sys.modules
)
print(json.dumps(out))
"""


def _tiny_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8),
        y_train=np.arange(20) % 2,
        x_test=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
        y_test=np.arange(6) % 2,
    )
    return path


def test_api_validates_jobs_and_uploads_without_importing_torch(tmp_path):
    # Only this test's settings: none inherited from the environment.
    env = service_env(tmp_path, UPLOAD_FILE=str(_tiny_npz(tmp_path / "t.npz")))
    out = json.loads(run_python(SCRIPT, env, timeout=180))
    assert (out["job"], out["bad_arch"], out["upload"], out["upload_job"]) == (201, 422, 201, 201)
    info = out["upload_info"]
    assert (info["num_classes"], info["in_channels"], info["image_size"]) == (2, 1, 8)
    assert out["options"] == 200
    assert out["modules"] == [], f"the API process imported {out['modules']}"
