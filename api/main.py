"""The FastAPI application: `create_app()` (uvicorn: `api.main:create_app --factory`)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import APIRouter, FastAPI

import lorita
from api.allow import install_allow_handler
from api.dashboard import routes as dashboard
from api.edge import EdgeGuard
from api.errors import install_error_handlers
from api.openapi import install_openapi
from api.redact import install_token_redaction
from api.routes import artifacts, datasets, events, health, jobs, models, session
from api.unavailable import install_unavailable_handlers
from store.artifacts import dataset_files
from store.migrate import ensure_schema
from store.settings import Settings, get_settings

API_PREFIX = "/api/v1"
log = logging.getLogger("lorita.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Embedded mode migrates; deployment refuses an outdated schema (SchemaOutdated).
        ensure_schema(settings)
        install_token_redaction()
        dataset_files(settings).incoming.mkdir(parents=True, exist_ok=True)
        settings.artifact_dir.mkdir(parents=True, exist_ok=True)
        # Threads for blocking work; more than the database turns (api.dbgate), so
        # requests that do not use the database always find one.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        yield

    app = FastAPI(
        title="LoRITa compression service",
        version=lorita.__version__,
        description="Train with LoRITa, merge, truncate the SVD, download the compressed "
        "model. Every route except /healthz and the docs needs `Authorization: Bearer TOKEN`.",
        lifespan=lifespan,
    )
    app.state.settings = settings

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(jobs.router)
    api.include_router(events.router)
    api.include_router(artifacts.router)
    api.include_router(datasets.router)
    api.include_router(models.router)
    api.include_router(session.api_router)
    api.include_router(health.router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(session.page_router)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    install_error_handlers(app)
    install_unavailable_handlers(app)
    install_allow_handler(app)
    install_openapi(app)
    app.add_middleware(EdgeGuard)
    return app
