"""docker/gpu_slot.py: worker replicas on one machine take one GPU each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deployfiles import REPO

GPU_SLOT = REPO / "docker" / "gpu_slot.py"
# Prints the GPU it was given, then holds it until killed.
HOLD_GPU = "import os, time; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'), flush=True); time.sleep(60)"  # noqa: E501


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, str]:
    """Environment of a fake two-GPU machine: an nvidia-smi that lists two GPUs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\necho 'GPU 1: Fake GPU (UUID: GPU-1)'\n"
    )
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}", GPU_LOCK_DIR=str(tmp_path / "locks"), GPU_WAIT_S="0.2"
    )
    return env


def start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(GPU_SLOT), sys.executable, "-c", HOLD_GPU],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


def test_replicas_take_different_gpus_and_wait_for_a_free_one(machine):
    first = start(machine)
    assert first.stdout.readline().strip() == "0"
    second = start(machine)
    assert second.stdout.readline().strip() == "1"
    third = start(machine)
    try:
        # Both GPUs are held: the third replica waits and says why.
        assert "already have a worker" in third.stderr.readline()
        # The first one stops (container stopped): its GPU is free again.
        stop(first)
        assert third.stdout.readline().strip() == "0"
    finally:
        stop(second, third)


def test_a_hand_pinned_gpu_is_kept(machine):
    process = start({**machine, "CUDA_VISIBLE_DEVICES": "1"})
    try:
        assert process.stdout.readline().strip() == "1"
    finally:
        stop(process)


def test_without_a_gpu_the_command_runs_unchanged(machine, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    process = start({**machine, "PATH": str(empty)})
    try:
        assert process.stdout.readline().strip() == "unset"
        assert "no GPU visible" in process.stderr.readline()
    finally:
        stop(process)
