"""Give this worker container a GPU of its own, then run the worker command.

Compose gives every replica of a service the same device request, so with a
fixed `count: 1` every worker of `docker compose up --scale worker=4` would land
on GPU 0. Instead each replica sees all GPUs of its machine (`count: all`) and
takes the first one whose lock file it can lock. The lock files sit on a volume
local to the machine and shared by its replicas; the worker keeps the locked file
open for its whole life (the descriptor survives exec), so the GPU is freed when
the container stops, however it stops.

    gpu_slot.py COMMAND [ARG...]

Sets CUDA_VISIBLE_DEVICES to the chosen index and execs COMMAND. Leaves the
environment alone when CUDA_VISIBLE_DEVICES is already set (pinned by hand) or
no GPU is visible (the worker then trains on the CPU). With more replicas than
GPUs, the extra ones wait until a GPU is free.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time

LOCK_DIR = os.environ.get("GPU_LOCK_DIR", "/var/lib/lorita/gpu-locks")
WAIT_S = float(os.environ.get("GPU_WAIT_S", "30"))


def log(message: str) -> None:
    print(f"gpu_slot: {message}", file=sys.stderr, flush=True)


def count_gpus() -> int:
    """GPUs visible in this container, as listed by the driver's nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        log(f"nvidia-smi failed ({error}); treating this machine as having no GPU")
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def try_lock(index: int) -> int | None:
    """Open and lock gpu-INDEX.lock; the descriptor, or None when another worker holds it."""
    fd = os.open(os.path.join(LOCK_DIR, f"gpu-{index}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # Who holds it, for a person looking at the volume.
    os.ftruncate(fd, 0)
    os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
    return fd


def claim_gpu(gpu_count: int) -> int:
    """Index of the GPU this process now holds; waits while every GPU is taken."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    while True:
        for index in range(gpu_count):
            fd = try_lock(index)
            if fd is not None:
                os.set_inheritable(fd, True)
                return index
        log(f"all {gpu_count} GPU(s) already have a worker; retrying in {WAIT_S:g}s")
        time.sleep(WAIT_S)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        log(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} set by hand; kept")
    else:
        gpu_count = count_gpus()
        if gpu_count == 0:
            log("no GPU visible; the worker trains on the CPU")
        else:
            index = claim_gpu(gpu_count)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            log(f"took GPU {index} of {gpu_count}")
    os.execvp(argv[0], argv)
    return 127  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
