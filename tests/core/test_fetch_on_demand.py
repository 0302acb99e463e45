"""Built-in datasets on demand: presence without torch, a fetch announced as a "data"
stage, and a failure whose reason says what a user of the service can do."""

from __future__ import annotations

import pytest

from core.data.fetch import DatasetUnavailable, ensure_builtin
from core.data.layout import CIFAR_FILES, IDX_FILES, builtin_present, idx_raw_dir
from core.pipeline import run_job
from core.spec import JobSpec


def fake_mnist(data_dir):
    raw = idx_raw_dir("mnist", data_dir)
    raw.mkdir(parents=True)
    for stem in IDX_FILES.values():
        (raw / f"{stem}.gz").write_bytes(b"")


def test_presence_follows_the_files(tmp_path):
    assert builtin_present("digits", tmp_path)  # inside scikit-learn
    assert not builtin_present("mnist", tmp_path)
    fake_mnist(tmp_path)
    assert builtin_present("mnist", tmp_path) and not builtin_present("fashion-mnist", tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in CIFAR_FILES["cifar10"][:-1]:
        (folder / name).write_bytes(b"")
    assert not builtin_present("cifar10", tmp_path)  # the test batch is missing
    (folder / "test_batch").write_bytes(b"")
    assert builtin_present("cifar10", tmp_path)


def test_a_present_dataset_is_not_fetched(tmp_path):
    fake_mnist(tmp_path)
    said = []
    assert ensure_builtin("mnist", tmp_path, said.append) is False
    assert ensure_builtin("upload:abc", tmp_path, said.append) is False
    assert said == []


def unusable_data_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / "data"  # cannot be created: its parent is a file


def test_a_dataset_that_cannot_be_had_says_why(tmp_path):
    said = []
    with pytest.raises(DatasetUnavailable) as caught:
        ensure_builtin("cifar10", unusable_data_dir(tmp_path), said.append)
    assert said and "fetching it" in said[0] and "internet" in said[0]
    assert caught.value.name == "cifar10" and "cannot write there" in caught.value.detail


def test_the_job_shows_a_data_stage_and_the_worker_reason_is_actionable(tmp_path):
    from worker.tasks import unavailable_reason

    events = []
    spec = JobSpec.model_validate({"model": {"arch": "fcn"}, "data": {"dataset": "cifar10"}})
    with pytest.raises(DatasetUnavailable) as caught:
        run_job(spec, tmp_path / "out", data_dir=unusable_data_dir(tmp_path), device="cpu",
                on_event=events.append)  # fmt: skip
    stages = [(e["stage"], e["message"]) for e in events if e["type"] == "stage"]
    assert stages[0] == ("data", "loading dataset cifar10")
    assert stages[1][0] == "data" and "fetching it" in stages[1][1]
    reason = unavailable_reason(caught.value)
    assert "not on this server" in reason and "Upload the data" in reason
    assert "lorita data fetch cifar10" in reason  # for the administrator
