"""The job task: load the job, run core.pipeline, record what happens, set the final state.

The task is thin on purpose: all machine learning is in core; this module only
translates between the pipeline's callbacks and the database, and decides the
job's final state. Nothing a job does may crash the worker process.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import Reject
from celery.signals import worker_shutting_down
from sqlalchemy.exc import OperationalError

from core.catalog import parse_upload_reference
from store import jobs as repo
from store.artifacts import LocalArtifactStore, artifact_store, dataset_files
from store.datasets import get_owned_dataset
from store.db import session_scope
from store.models import CANCELLED, FAILED, FINAL_STATES, QUEUED, SUCCEEDED, Job
from store.settings import Settings
from store.weights import get_owned_model, weights_files
from worker.app import RUN_JOB_TASK
from worker.outbox import Outbox, database_unavailable, retry_while_unavailable

log = logging.getLogger("lorita.worker")

# Set when the worker begins a warm shutdown (SIGTERM): the running job stops at the
# next batch, goes back to the queue and another worker resumes it from its checkpoint.
SHUTTING_DOWN = threading.Event()

STOP_POLL_S = 0.5  # the database is asked about a cancel at most this often
PROGRESS_WRITE_S = 1.0  # batch progress is written at most this often
PROGRESS_EVENT_S = 2.0  # and logged as an event at most this often
# A job that ends while the database is away waits this long for it (its final
# state and kept events); the message is requeued when the database is away at start.
DB_OUTAGE_MAX_WAIT_S = 3600.0
START_RETRY_S = 2.0


@worker_shutting_down.connect
def _on_worker_shutting_down(**_kwargs: Any) -> None:
    SHUTTING_DOWN.set()


def register_tasks(app: Celery) -> None:
    settings: Settings = app.lorita_settings

    @app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_job(self, job_id: str) -> str:
        if SHUTTING_DOWN.is_set():
            # Fetched while this worker stops: give the message back for another worker.
            raise Reject("worker shutting down", requeue=True)
        hostname = self.request.hostname or "worker"
        try:
            return JobRun(settings, job_id, hostname).run()
        except DatabaseUnavailableAtStart:
            # Not claimed, so not ours: back to the queue (after a pause, not a busy loop).
            log.warning("job %s: database unavailable; message requeued", job_id)
            time.sleep(START_RETRY_S)
            raise Reject("database unavailable", requeue=True) from None
        except Exception:  # the last line of defence: the worker must keep serving
            log.exception("job %s: unexpected error outside the pipeline", job_id)
            return "error"


class DatasetMissing(Exception):
    pass


class DatabaseUnavailableAtStart(Exception):
    pass


class OutboxPending(OperationalError):
    """Kept events could not be written yet: the final state must wait for them."""

    def __init__(self) -> None:
        super().__init__("kept events not yet written", None, Exception("database unavailable"))


class JobRun:
    """One attempt at one job on this worker."""

    def __init__(self, settings: Settings, job_id: str, worker: str):
        self.settings = settings
        self.job_id = job_id
        self.worker = worker
        self.store: LocalArtifactStore = artifact_store(settings)
        self.lost = threading.Event()  # job deleted or taken over: stop quietly
        self._last_stop_check = 0.0
        self._stop_cached = False
        self._last_progress_write = 0.0
        self._last_progress_event = 0.0
        self._heartbeat_stop = threading.Event()
        # Events that could not be written during a database outage, in order.
        self.outbox = Outbox(job_id, self._write_event)

    # --- the run --------------------------------------------------------------------

    def run(self) -> str:
        try:
            claimed = self._claim()
        except Exception as error:
            if database_unavailable(error):
                raise DatabaseUnavailableAtStart from error
            raise
        if isinstance(claimed, str):
            return claimed
        spec_data, owner_id, attempt = claimed
        log.info("job %s: running (attempt %d)", self.job_id, attempt)

        heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
        heartbeat.start()
        try:
            return self._run_pipeline(spec_data, owner_id)
        finally:
            self._heartbeat_stop.set()
            heartbeat.join(timeout=5)

    def _claim(self) -> str | tuple[dict[str, Any], int, int]:
        """(spec, owner, attempt) once this worker owns the job, or why it does not run."""
        with session_scope(self.settings) as session:
            job = session.get(Job, self.job_id)
            if job is None:
                return "missing"
            if job.status != QUEUED:
                # Finished, cancelled, or running elsewhere (a redelivered message).
                return f"skipped ({job.status})"
            if not repo.claim_job(session, self.job_id, self.worker):
                return "skipped (taken)"
            session.refresh(job)
            spec_data, owner_id, attempt = job.spec, job.owner_id, job.attempts
            repo.add_event(
                session, self.job_id, "state",
                {"status": "running", "worker": self.worker, "attempt": attempt},
            )  # fmt: skip
        return spec_data, owner_id, attempt

    def _run_pipeline(self, spec_data: dict[str, Any], owner_id: int) -> str:
        from core.data.fetch import DatasetUnavailable
        from core.devices import is_out_of_memory, resolve_device
        from core.errors import Cancelled, LoritaError

        job_dir = self.store.job_dir(self.job_id)
        checkpoint_dir = job_dir / "checkpoints"
        out_dir = job_dir / "output"
        shutil.rmtree(out_dir, ignore_errors=True)
        try:
            from core.pipeline import run_job
            from core.spec import JobSpec

            spec = JobSpec.model_validate(spec_data)
            dataset_file = self._when_database_is_back(
                lambda: self._dataset_file(spec.data.dataset, owner_id),
                f"job {self.job_id}: dataset lookup",
            )
            weights_file = self._weights_file(spec.model.weights, owner_id)
            device = resolve_device(self.settings.worker_device)
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            result = run_job(
                spec,
                out_dir,
                data_dir=self.settings.data_dir,
                dataset_file=dataset_file,
                device=device,
                on_event=self.on_event,
                should_stop=self.should_stop,
                checkpoint_dir=checkpoint_dir,
                weights_file=weights_file,
            )
        except Cancelled:
            return self._stopped()
        except DatasetMissing as error:
            return self._fail(str(error), "data")
        except DatasetUnavailable as error:
            if self.lost.is_set():
                return self._stopped()
            return self._fail(unavailable_reason(error), "data")
        except LoritaError as error:
            if self.lost.is_set():
                return self._stopped()
            return self._fail(str(error), getattr(error, "kind", "error"))
        except MemoryError:
            return self._fail(
                "The worker ran out of host memory. Lower train.batch_size or use a smaller "
                "model or dataset.",
                "out_of_memory",
            )
        except Exception as error:
            if self.lost.is_set():
                return self._stopped()
            if is_out_of_memory(error):
                batch = (spec_data.get("train") or {}).get("batch_size") or "the default"
                return self._fail(
                    f"Out of GPU memory ({_first_line(error)}). Lower train.batch_size "
                    f"(now {batch}), or enable train.amp, or use a smaller model.",
                    "out_of_memory",
                )
            log.error("job %s failed:\n%s", self.job_id, traceback.format_exc())
            return self._fail(
                f"Internal error: {type(error).__name__}: {_first_line(error)}. "
                "This is a bug or an environment problem; the worker log has the traceback.",
                "internal",
            )
        return self._succeed(result.model_dump(mode="json"), out_dir)

    # --- final states --------------------------------------------------------------

    def _succeed(self, result: dict[str, Any], out_dir: Path) -> str:
        try:
            self.store.put_dir(self.job_id, out_dir)
        except Exception as error:
            if self.lost.is_set():
                return self._stopped()
            return self._fail(f"Could not store the artifacts: {error}", "storage")
        done = self._finish(SUCCEEDED, result=result, progress=1.0)
        self._clean_scratch()
        log.info("job %s: succeeded", self.job_id)
        return SUCCEEDED if done else "lost"

    def _fail(self, reason: str, kind: str) -> str:
        self._finish(FAILED, failure_reason=reason, failure_kind=kind)
        self._clean_scratch()
        log.info("job %s: failed (%s): %s", self.job_id, kind, reason)
        return FAILED

    def _finish(self, status: str, **values: Any) -> bool:
        """The final state, after every kept event; both wait out a database outage."""

        def write() -> bool:
            if not self.outbox.flush():
                raise OutboxPending
            with session_scope(self.settings) as session:
                return repo.finish_job(session, self.job_id, self.worker, status, **values)

        return self._when_database_is_back(write, f"job {self.job_id}: {status}")

    def _when_database_is_back(self, action, what: str):
        return retry_while_unavailable(
            action, what=what, give_up=SHUTTING_DOWN.is_set, max_wait_s=DB_OUTAGE_MAX_WAIT_S
        )

    def _stopped(self) -> str:
        """The pipeline stopped at our request: cancel, shutdown, or the job is gone."""
        return self._when_database_is_back(self._stop_now, f"job {self.job_id}: stop")

    def _stop_now(self) -> str:
        if not self.outbox.flush():
            raise OutboxPending
        with session_scope(self.settings) as session:
            job = session.get(Job, self.job_id)
            if job is None:
                self.store.delete(self.job_id)  # deleted while running
                return "deleted"
            if job.cancel_requested:
                # Scratch goes before the state commits: whoever sees "cancelled" must
                # not find its checkpoints, and a cancelled job never resumes from them.
                self._clean_scratch()
                repo.finish_job(session, self.job_id, self.worker, CANCELLED)
                cancelled = True
            elif SHUTTING_DOWN.is_set() and repo.requeue_job(
                session, self.job_id, self.worker, "worker shutting down; resumes elsewhere"
            ):
                cancelled = False
            else:
                return "lost" if job.status not in FINAL_STATES else job.status
        if cancelled:
            log.info("job %s: cancelled", self.job_id)
            return CANCELLED
        # Committed as queued above; now hand it to the next worker (checkpoint kept).
        from worker.enqueue import enqueue_job

        enqueue_job(self.job_id, self.settings)
        log.info("job %s: requeued for another worker (shutdown)", self.job_id)
        return QUEUED

    def _clean_scratch(self) -> None:
        job_dir = self.store.job_dir(self.job_id)
        shutil.rmtree(job_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(job_dir / "output", ignore_errors=True)

    # --- inputs ----------------------------------------------------------------------

    def _dataset_file(self, reference: str, owner_id: int) -> Path | None:
        dataset_id = parse_upload_reference(reference)
        if dataset_id is None:
            return None
        with session_scope(self.settings) as session:
            row = get_owned_dataset(session, dataset_id, owner_id)
            kind = row.kind if row else None
        if kind is None:
            raise DatasetMissing(
                f"The uploaded dataset {reference} no longer exists. Upload it again "
                "(POST /api/v1/datasets) and submit the job with the new id."
            )
        path = dataset_files(self.settings).path(dataset_id, kind)
        if not path.is_file():
            raise DatasetMissing(
                f"The file of the uploaded dataset {reference} is missing on the server "
                "(DATASET_DIR). Upload it again and submit the job with the new id."
            )
        return path

    def _weights_file(self, reference: str | None, owner_id: int) -> Path | None:
        """The file of the owner's uploaded weights named by model.weights (upload:ID)."""
        model_id = parse_upload_reference(reference) if reference else None
        if model_id is None:
            return None  # no weights (the API refuses paths for the service)
        with session_scope(self.settings) as session:
            found = get_owned_model(session, model_id, owner_id) is not None
        path = weights_files(self.settings).path(model_id)
        if not found or not path.is_file():
            raise DatasetMissing(
                f"The uploaded weights {reference} no longer exist on the server. Upload "
                "them again (POST /api/v1/models) and submit the job with the new id."
            )
        return path

    # --- pipeline callbacks ---------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """Event sink: epochs and stages are written at once (kept in order while the
        database is away), batch progress throttled (and dropped during an outage)."""
        kind = event.get("type", "event")
        if kind == "result":
            return  # the result is stored with the final state
        if kind != "batch":
            self.outbox.add(event)
            self.outbox.flush()
            return
        now = time.monotonic()
        if now - self._last_progress_write < PROGRESS_WRITE_S:
            return
        if len(self.outbox):  # the database was away: the kept events go first
            self._last_progress_write = now
            self.outbox.flush()
            return
        try:
            self._write_event(event)
        except Exception as error:
            # Losing one progress update must not fail the training run.
            database_unavailable(error)
            log.warning("job %s: could not record batch progress", self.job_id)

    def _write_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "event")
        progress = event.get("progress")
        updates: dict[str, Any] = {}
        if isinstance(progress, (int, float)):
            updates["progress"] = max(0.0, min(1.0, float(progress)))
        if kind == "batch":
            now = time.monotonic()
            if now - self._last_progress_write < PROGRESS_WRITE_S:
                return
            self._last_progress_write = now
            with session_scope(self.settings) as session:
                self._touch(session, updates)
                if now - self._last_progress_event >= PROGRESS_EVENT_S:
                    self._last_progress_event = now
                    repo.add_event(session, self.job_id, "batch", event)
            return
        with session_scope(self.settings) as session:
            if kind == "stage" and event.get("stage"):
                updates["stage"] = str(event["stage"])[:32]
            if kind == "epoch":
                repo.record_epoch(session, self.job_id, event)
            self._touch(session, updates)
            repo.add_event(session, self.job_id, kind, event)

    def _touch(self, session, updates: dict[str, Any]) -> None:
        if not repo.touch_job(session, self.job_id, self.worker, **updates):
            self.lost.set()

    def should_stop(self) -> bool:
        if SHUTTING_DOWN.is_set() or self.lost.is_set():
            return True
        now = time.monotonic()
        if now - self._last_stop_check >= STOP_POLL_S:
            self._last_stop_check = now
            try:
                with session_scope(self.settings) as session:
                    self._stop_cached = repo.stop_requested(session, self.job_id)
            except Exception:
                log.warning("job %s: could not read the cancel flag", self.job_id)
        return self._stop_cached

    def _heartbeat_loop(self) -> None:
        # Proves the job is alive while the pipeline is in a long step without events.
        while not self._heartbeat_stop.wait(self.settings.job_heartbeat_s):
            try:
                with session_scope(self.settings) as session:
                    self._touch(session, {})
            except Exception as error:
                database_unavailable(error)
                log.warning("job %s: heartbeat failed", self.job_id)


def unavailable_reason(error) -> str:
    """Why a built-in dataset could not be had, for someone who only has the dashboard."""
    name = error.name
    return (
        f"The built-in dataset {name} is not on this server and the worker could not fetch "
        f"it: {error.detail}. Upload the data instead (Datasets page, or POST "
        f"/api/v1/datasets with a .npz) and submit the job on the upload, or ask the "
        f"server's administrator to run `lorita data fetch {name}` on the worker machine "
        f"(data folder {error.data_dir})."
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
