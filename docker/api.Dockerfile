# syntax=docker/dockerfile:1.7
# The API image: FastAPI under uvicorn. Also runs the `migrate` step (alembic).
#
#   docker build -f docker/api.Dockerfile -t lorita-api .
#
# The API validates specs and uploads, stores jobs and serves files; it never
# trains, and never imports torch. It installs only the main dependencies of
# pyproject.toml (the `engine` extra, torch and the exporters, is the workers').

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN --mount=type=cache,target=/root/.cache/pip pip install --upgrade pip

# Dependencies first (from pyproject.toml alone), so editing the sources does
# not reinstall them.
COPY pyproject.toml /src/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# No torch may come in through a dependency either: the build fails if it does.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps /src \
    && pip check \
    && python -c "import importlib.util, sys; sys.exit('torch is installed' if importlib.util.find_spec('torch') else 0)"

# -------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS api

# One fixed uid/gid in the API and worker images: they share named volumes, and
# an empty named volume takes the owner of the folder it is mounted over.
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" lorita \
    && useradd --system --uid "${APP_UID}" --gid lorita --create-home --home-dir /home/lorita \
        --shell /usr/sbin/nologin lorita \
    && mkdir -p /var/lib/lorita/artifacts /var/lib/lorita/datasets /var/lib/lorita/data \
        /var/lib/lorita/state \
    && chown -R lorita:lorita /var/lib/lorita

COPY --from=build /opt/venv /opt/venv

# alembic.ini and the migration scripts, so `alembic upgrade head` runs here.
WORKDIR /app
COPY --chown=root:root alembic.ini ./
COPY --chown=root:root migrations ./migrations

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATE_DIR=/var/lib/lorita/state \
    ARTIFACT_DIR=/var/lib/lorita/artifacts \
    DATASET_DIR=/var/lib/lorita/datasets \
    DATA_DIR=/var/lib/lorita/data

USER lorita
EXPOSE 8000

# Python is already here; no curl needed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# --proxy-headers: trust X-Forwarded-* only from FORWARDED_ALLOW_IPS (uvicorn
# reads that variable; set it to the reverse proxy's address).
# --timeout-graceful-shutdown: on SIGTERM stop accepting, let requests in flight
# finish (event streams are cut after this many seconds). Keep it below the
# compose stop_grace_period. WEB_CONCURRENCY sets the number of processes.
CMD ["uvicorn", "api.main:create_app", "--factory", \
     "--host", "0.0.0.0", "--port", "8000", \
     "--proxy-headers", "--timeout-graceful-shutdown", "20", \
     "--no-server-header"]
