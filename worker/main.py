"""Start a worker process: `python -m worker.main` (what `lorita worker` runs).

One Celery worker, solo pool: the job runs in the worker's main thread, so a
warm shutdown (SIGTERM) reaches the training loop, which stops at the next batch
and requeues the job (see worker.tasks). Run one process per GPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
import uuid

from celery import Celery
from celery.signals import worker_ready

from store.migrate import ensure_schema
from store.settings import Settings, get_settings
from worker.app import celery_app
from worker.recovery import start_orphan_watch
from worker.tasks import register_tasks


def unique_hostname() -> str:
    return f"lorita-{os.getpid()}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"


def exit_with_parent() -> None:
    """Started by `lorita serve`: warm-shut down if that process goes away."""
    parent = os.environ.get("LORITA_PARENT_PID")
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lorita-parent-watch", daemon=True).start()


def warm_up() -> None:
    """Import the engine before taking jobs: an import error shows at start, and the
    first job does not pay for the imports (torch, the pipeline, the optimizer's
    compile machinery that the first optimizer construction loads)."""
    import torch

    import core.pipeline  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def log_device(setting: str) -> None:
    """Say at start which device the jobs will use; a setting this machine cannot honour
    is logged here, and each job then fails with the same message (kind "spec")."""
    from core.devices import resolve_device
    from core.errors import SpecError

    log = logging.getLogger("lorita.worker")
    try:
        log.info("worker device: %s", resolve_device(setting))
    except SpecError as error:
        log.error("WORKER_DEVICE=%s: %s", setting, error)


def build_worker_app(settings: Settings) -> Celery:
    app = celery_app(settings)
    register_tasks(app)
    return app


def run_worker(
    settings: Settings | None = None,
    *,
    hostname: str | None = None,
    device: str | None = None,
    loglevel: str | None = None,
) -> None:
    """Serve jobs until stopped (SIGTERM: finish the current batch, requeue, exit)."""
    settings = settings or get_settings()
    if device:
        settings = Settings.model_validate({**settings.model_dump(), "worker_device": device})
    logging.basicConfig(
        level=(loglevel or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ensure_schema(settings)
    warm_up()
    log_device(settings.worker_device)
    app = build_worker_app(settings)

    @worker_ready.connect(weak=False)
    def _on_ready(**_kwargs) -> None:
        start_orphan_watch(settings)
        exit_with_parent()

    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
            f"--queues={settings.queue_name}",
            f"--hostname={hostname or unique_hostname()}",
            f"--loglevel={(loglevel or settings.log_level).upper()}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a LoRITa worker (one job at a time).")
    parser.add_argument("--hostname", help="Celery node name (default: unique per process)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: WORKER_DEVICE)")
    parser.add_argument("--loglevel", help="DEBUG, INFO, WARNING (default: LOG_LEVEL)")
    args = parser.parse_args(argv)
    run_worker(hostname=args.hostname, device=args.device, loglevel=args.loglevel)


if __name__ == "__main__":
    main()
