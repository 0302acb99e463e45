"""The HTTP side of scripts/compose_check.sh: jobs through the API container.

Standard library only (it runs on the host, beside podman). Every command
prints what it saw, one line per change, for the transcript; it exits non-zero
when what the README promises did not happen.

    check_jobs.py submit SPEC_JSON                 -> prints the job id
    check_jobs.py wait JOB_ID STATUS[,STATUS] TIMEOUT_S
    check_jobs.py wait-epoch JOB_ID EPOCH TIMEOUT_S -> prints the job's worker
    check_jobs.py resumed JOB_ID EPOCHS            (two attempts, the second from the checkpoint)
    check_jobs.py download JOB_ID DIR              -> prints name, size, sha256 of each artifact
    check_jobs.py delete JOB_ID
    check_jobs.py show JOB_ID                      (status, attempts, worker; fails if absent)

LORITA_URL (e.g. http://127.0.0.1:8000) and LORITA_TOKEN come from the environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from job_events import parse_events, timeline

POLL_S = 0.5


def request(method: str, path: str, body: dict | None = None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        os.environ["LORITA_URL"].rstrip("/") + "/api/v1" + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {os.environ['LORITA_TOKEN']}"},
    )
    if data is not None:
        req.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(req, timeout=timeout)


def get_json(path: str):
    with request("GET", path) as response:
        return json.load(response)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def describe(job: dict) -> str:
    where = f" on {job['worker']}" if job.get("worker") else ""
    attempt = f" (attempt {job['attempts']})" if job["status"] == "running" else ""
    reason = f": {job['failure_reason']}" if job.get("failure_reason") else ""
    return f"{job['id']} {job['status']}{where}{attempt}{reason}"


def submit(spec_json: str) -> int:
    spec = json.loads(spec_json)
    with request("POST", "/jobs", spec) as response:
        assert response.status == 201, response.status
        job = json.load(response)
    say(f"submitted {json.dumps(spec)} -> job {job['id']} ({job['status']})")
    print(job["id"])
    return 0


def wait(job_id: str, statuses: str, timeout_s: str) -> int:
    wanted = set(statuses.split(","))
    deadline, last = time.monotonic() + float(timeout_s), None
    while time.monotonic() < deadline:
        job = get_json(f"/jobs/{job_id}")
        seen = (job["status"], job.get("worker"))
        if seen != last:
            say(describe(job))
            last = seen
        if job["status"] in wanted:
            return 0
        if job["status"] in ("succeeded", "failed", "cancelled"):
            say(f"job {job_id} ended {job['status']}, not {statuses}")
            return 1
        time.sleep(POLL_S)
    say(f"job {job_id} not {statuses} within {timeout_s}s")
    return 1


def wait_epoch(job_id: str, epoch: str, timeout_s: str) -> int:
    deadline = time.monotonic() + float(timeout_s)
    while time.monotonic() < deadline:
        epochs = get_json(f"/jobs/{job_id}/metrics")["epochs"]
        if len(epochs) >= int(epoch):
            job = get_json(f"/jobs/{job_id}")
            say(f"job {job_id}: {len(epochs)} epochs done, {describe(job)}")
            print(job["worker"])
            return 0
        time.sleep(POLL_S)
    say(f"job {job_id} did not reach epoch {epoch} within {timeout_s}s")
    return 1


def events(job_id: str) -> list[tuple[str, dict]]:
    """Every stored event of a finished job, from its server-sent event stream."""
    with request("GET", f"/jobs/{job_id}/events", timeout=60) as response:
        return parse_events(raw.decode().rstrip("\n") for raw in response)


def resumed(job_id: str, total_epochs: str) -> int:
    """Two attempts on two workers; the second trained from the epoch after the first's last."""
    seen = timeline(events(job_id))
    epochs = seen.epochs
    say(f"job {job_id}: states {' -> '.join(seen.states)}")
    for number, trained in sorted(epochs.items()):
        span = f"{trained[0]}-{trained[-1]}" if trained else "none"
        say(f"job {job_id}: attempt {number} on {seen.workers[number - 1]} trained epochs {span}")
    if seen.reasons:
        say(f"job {job_id}: queued again because: {seen.reasons[-1]}")
    ok = (
        seen.states == ["queued", "running", "queued", "running", "succeeded"]
        and len(set(seen.workers)) == 2
        and sorted(epochs) == [1, 2]
        and epochs[1]
        and epochs[2]
        and epochs[2][0] == epochs[1][-1] + 1
        and epochs[1] + epochs[2] == list(range(1, int(total_epochs) + 1))
    )
    if ok:
        say(f"job {job_id}: resumed from the epoch-{epochs[1][-1]} checkpoint on another worker")
        return 0
    say(f"job {job_id}: NOT resumed from its checkpoint on another worker")
    return 1


def download(job_id: str, folder: str) -> int:
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    artifacts = get_json(f"/jobs/{job_id}/artifacts")
    for artifact in sorted(artifacts, key=lambda a: a["name"]):
        with request("GET", f"/jobs/{job_id}/artifacts/{artifact['name']}", timeout=120) as r:
            content = r.read()
        (target / artifact["name"]).write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()[:16]
        print(f"{artifact['name']} {len(content)} bytes sha256:{digest}")
    names = {a["name"] for a in artifacts}
    return 0 if {"lowrank.safetensors", "report.json"} <= names else 1


def delete(job_id: str) -> int:
    with request("DELETE", f"/jobs/{job_id}") as response:
        say(f"deleted job {job_id} (HTTP {response.status})")
    return 0


def show(job_id: str) -> int:
    try:
        job = get_json(f"/jobs/{job_id}")
    except urllib.error.HTTPError as error:
        say(f"job {job_id}: HTTP {error.code}")
        return 1
    say(describe(job))
    return 0


COMMANDS = {
    "submit": submit,
    "wait": wait,
    "wait-epoch": wait_epoch,
    "resumed": resumed,
    "download": download,
    "delete": delete,
    "show": show,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
