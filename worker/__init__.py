"""Celery worker: runs queued jobs through the engine (core.pipeline)."""

from core.threads import prefer_passive_openmp_wait

# Before torch loads (core/threads.py): a worker shares the CPU with the API and others.
prefer_passive_openmp_wait()
