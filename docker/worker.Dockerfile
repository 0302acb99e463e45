# syntax=docker/dockerfile:1.7
# The worker image: a Celery worker that trains one job at a time on one GPU.
#
#   docker build -f docker/worker.Dockerfile -t lorita-worker .                        # GPU
#   docker build -f docker/worker.Dockerfile --build-arg TORCH_FLAVOR=cpu -t lorita-worker-cpu .
#
# GPU flavour: the torch/torchvision wheels PyPI serves for Linux x86_64 are the
# CUDA builds and carry the CUDA runtime, cuDNN and NCCL as pip packages, so the
# base is plain Python: the only thing the host adds is the NVIDIA driver, which
# the NVIDIA Container Toolkit mounts into a container that reserves a GPU. The
# host driver must support the CUDA version of the pinned torch build.
# CPU flavour: the CPU wheels of the very same versions from PyTorch's CPU index,
# for machines without a GPU (about 5 GB smaller).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# gpu | cpu: which torch build the `build` stage starts from.
ARG TORCH_FLAVOR=gpu

# ------------------------------------------------------- common build tooling
FROM ${PYTHON_IMAGE} AS build-base
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN --mount=type=cache,target=/root/.cache/pip pip install --upgrade pip

# ----------------------------------------------- torch, pinned, in two builds
# Keep these equal to the pins in pyproject.toml (tests/deploy checks it).
FROM build-base AS torch-gpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

FROM build-base AS torch-cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_CPU_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# ------------------------------------------------------- the project on top
FROM torch-${TORCH_FLAVOR} AS build
# Dependencies first (from pyproject.toml alone), so editing the sources does
# not reinstall them: the main ones and the `engine` extra, whose torch pins are
# already met by the stage above.
COPY pyproject.toml /src/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['engine']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . /src
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps /src \
    && pip check

# -------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS worker

# Same uid/gid as the API image: both write to the shared artifact volume.
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" lorita \
    && useradd --system --uid "${APP_UID}" --gid lorita --create-home --home-dir /home/lorita \
        --shell /usr/sbin/nologin lorita \
    && mkdir -p /var/lib/lorita/artifacts /var/lib/lorita/datasets /var/lib/lorita/data \
        /var/lib/lorita/state /var/lib/lorita/gpu-locks \
    && chown -R lorita:lorita /var/lib/lorita

COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/gpu_slot.py docker/worker_health.py /usr/local/bin/

# NVIDIA_*: asked of the NVIDIA Container Toolkit: every GPU the reservation
# grants, compute for CUDA, utility for nvidia-smi (gpu_slot.py counts GPUs).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATE_DIR=/var/lib/lorita/state \
    ARTIFACT_DIR=/var/lib/lorita/artifacts \
    DATASET_DIR=/var/lib/lorita/datasets \
    DATA_DIR=/var/lib/lorita/data \
    GPU_LOCK_DIR=/var/lib/lorita/gpu-locks \
    WORKER_DEVICE=auto \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /home/lorita
USER lorita

# gpu_slot.py pins this container to one free GPU, then execs the command.
ENTRYPOINT ["python", "/usr/local/bin/gpu_slot.py"]

# Docker healthcheck: the worker process runs and reaches the database and broker.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/worker_health.py"]

# worker.main runs Celery's worker with --pool=solo --concurrency=1
# --prefetch-multiplier=1: a training job owns its GPU, and a worker never holds
# a second job that another worker could run. On SIGTERM the job stops at the
# next batch and goes back to the queue; its next worker resumes it from the
# last epoch checkpoint (compose stop_grace_period gives it the time).
CMD ["python", "-m", "worker.main"]
