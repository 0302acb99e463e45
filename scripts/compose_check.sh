#!/usr/bin/env bash
# Build the api and worker images and run docker-compose.yml with podman, then do
# through the containers what the README's "Deploy" section promises: migrate,
# every service healthy, a token, a job over HTTP with its artifacts, a worker
# stopped mid-job whose job resumes on another worker, a backup and a restore.
# The way to check a change to docker/, docker-compose.yml or .dockerignore.
#
#   scripts/compose_check.sh        # as root, on Debian/Ubuntu (apt installs podman)
#
# Writes its transcript to docker/transcripts/compose_check.txt (TRANSCRIPT=...).
# Settings (environment):
#   CHECK_WORK       work folder (default /tmp/lorita-compose-check)
#   CHECK_TORCH_FLAVOR  torch build of the worker image: gpu (default: the wheel
#                    every index has; it trains on the CPU when there is no GPU)
#                    or cpu (needs PyTorch's CPU wheel index)
#   DEBIAN_MIRROR    for the Debian base image (default http://deb.debian.org/debian)
#   KEEP=1           leave the stack running at the end (default: `down -v`)
#
# What it runs, and why it is not plain `docker compose up`:
# - podman-compose creates every container from docker-compose.yml itself (same
#   commands, environment, volumes, healthchecks, stop signals and grace periods),
#   plus docker/check/compose.check.yml, which only swaps the postgres and redis
#   images for stand-ins built from Debian's packages (for machines that cannot
#   pull the official ones). The project is named `loritacheck`, so it never
#   touches a real `lorita` deployment on the same machine.
# - The images are built by `podman build` (this machine's pip settings are
#   mounted into the build, never written into an image), then `up --no-build`.
# - podman runs healthchecks from systemd timers and podman-compose (with podman
#   before 4.6) ignores `condition: service_healthy`; without systemd this script
#   runs every container's healthcheck itself, and starts the services in the
#   order depends_on gives (postgres, redis -> migrate -> api -> workers).
# - No GPU here: the `worker` service (NVIDIA reservation) is not started; two
#   replicas of `cpu-worker` run the jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

WORK="${CHECK_WORK:-/tmp/lorita-compose-check}"
TRANSCRIPT="${TRANSCRIPT:-$REPO/docker/transcripts/compose_check.txt}"
FLAVOR="${CHECK_TORCH_FLAVOR:-gpu}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PROJECT=loritacheck
PREFIX="localhost/$PROJECT"
BASE_IMAGE="$PREFIX/debian-python:bookworm"
GRACE_S=120          # docker-compose.yml: WORKER_STOP_GRACE_PERIOD default (2m)
PODMAN_COMPOSE_VERSION=1.6.0
JOB_SHORT='{"model": {"arch": "fcn"}, "data": {"dataset": "digits"}, "lorita": {"factor": 2}, "train": {"epochs": 3}}'
LONG_EPOCHS=40
JOB_LONG="{\"model\": {\"arch\": \"fcn\"}, \"data\": {\"dataset\": \"digits\"}, \"lorita\": {\"factor\": 2}, \"train\": {\"epochs\": $LONG_EPOCHS, \"batch_size\": 16}}"

mkdir -p "$WORK" "$(dirname "$TRANSCRIPT")"
: > "$TRANSCRIPT"
STARTED=$(date +%s)
say() { printf '[%4ss] %s\n' "$(( $(date +%s) - STARTED ))" "$*" | tee -a "$TRANSCRIPT"; }
# Run a command, its output into the transcript (indented), its status kept.
show() { say "\$ $*"; "$@" 2>&1 | grep -v -E 'systemd|syslog' | sed 's/^/      /' | tee -a "$TRANSCRIPT"; return "${PIPESTATUS[0]}"; }
fail() { say "FAILED: $*"; exit 1; }

# ----------------------------------------------------------------- tools
need_packages=()
for tool in podman:podman runc:runc debootstrap:debootstrap; do
    command -v "${tool%%:*}" >/dev/null || need_packages+=("${tool#*:}")
done
if [ "${#need_packages[@]}" -gt 0 ]; then
    say "installing ${need_packages[*]} (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi
if [ ! -x "$WORK/podman-compose/bin/podman-compose" ]; then
    python3 -m venv "$WORK/podman-compose"
    "$WORK/podman-compose/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
# crun fails on hybrid cgroups and containers may not raise their rlimits here:
# runc, cgroupfs, no default ulimits or pids limit; events to a file (no journald).
cat > "$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []
pids_limit = 0
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"
# COMPOSE_PROFILES: the cpu-worker service is in every command (stop, down...).
compose() {
    (cd "$WORK/project" && COMPOSE_PROFILES=cpu "$WORK/podman-compose/bin/podman-compose" -p "$PROJECT" \
        -f docker-compose.yml -f compose.check.yml "$@")
}
say "podman $(podman version --format '{{.Client.Version}}'), podman-compose $PODMAN_COMPOSE_VERSION, runc $(runc --version | head -1 | awk '{print $3}')"

# ---------------------------------------------------------------- images
if ! podman image exists "$BASE_IMAGE"; then
    say "base image: debootstrap bookworm (python3.11, venv, ca-certificates) -> $BASE_IMAGE"
    rm -rf "$WORK/rootfs"
    nice -n 10 debootstrap --variant=minbase \
        --include=python3.11,python3-venv,python-is-python3,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1
    chroot "$WORK/rootfs" apt-get clean
    rm -rf "$WORK/rootfs"/var/lib/apt/lists/* "$WORK/rootfs"/usr/share/doc/* \
        "$WORK/rootfs"/usr/share/man/* "$WORK/rootfs"/usr/share/locale/*
    tar -C "$WORK/rootfs" -c . | podman import --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

mapfile -t pip_mounts < <(python3 docker/check/pip_build_config.py "$WORK/pip.conf")
say "pip settings of this machine mounted into the builds: ${#pip_mounts[@]} paths (pip.conf included)"

declare -A built_s
build() {  # NAME DOCKERFILE CONTEXT [ARGS...]
    local name="$1" dockerfile="$2" context="$3" start
    shift 3
    start=$(date +%s)
    if ! nice -n 10 podman build --format docker --isolation=chroot "$@" \
        -f "$dockerfile" -t "$PREFIX/$name:latest" "$context" > "$WORK/build-$name.log" 2>&1; then
        tail -30 "$WORK/build-$name.log" | tee -a "$TRANSCRIPT"
        fail "build of $name ($WORK/build-$name.log)"
    fi
    built_s[$name]=$(( $(date +%s) - start ))
    say "built $PREFIX/$name:latest from $dockerfile in ${built_s[$name]}s"
}
build api docker/api.Dockerfile . "${pip_mounts[@]}" --build-arg "PYTHON_IMAGE=$BASE_IMAGE"
build worker-cpu docker/worker.Dockerfile . "${pip_mounts[@]}" \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "TORCH_FLAVOR=$FLAVOR"
build postgres-standin docker/check/postgres.Dockerfile docker/check --build-arg "BASE_IMAGE=$BASE_IMAGE"
build redis-standin docker/check/redis.Dockerfile docker/check --build-arg "BASE_IMAGE=$BASE_IMAGE"
podman image prune -f >/dev/null  # the images these builds replaced
say "images (worker-cpu: TORCH_FLAVOR=$FLAVOR):"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^$PREFIX/" | sed 's/^/      /' | tee -a "$TRANSCRIPT"
show podman run --rm "$PREFIX/api:latest" python -c \
    'import importlib.util; import api.main, sys; print("api image: torch installed:", importlib.util.find_spec("torch") is not None, "| imported by api.main:", "torch" in sys.modules)'

# ----------------------------------------------------------------- stack
rm -rf "$WORK/project" "$WORK/backup" "$WORK/artifacts"
mkdir -p "$WORK/project" "$WORK/backup"
cp docker-compose.yml docker/check/compose.check.yml "$WORK/project/"
api_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# .env as the README makes it: .env.example with the two passwords set.
sed -e "s/^POSTGRES_PASSWORD=$/POSTGRES_PASSWORD=$(openssl rand -hex 32)/" \
    -e "s/^REDIS_PASSWORD=$/REDIS_PASSWORD=$(openssl rand -hex 32)/" .env.example > "$WORK/project/.env"
printf 'LORITA_IMAGE_PREFIX=%s\nAPI_BIND=127.0.0.1\nAPI_PORT=%s\n' "$PREFIX" "$api_port" >> "$WORK/project/.env"
compose down -v >/dev/null 2>&1 || true

# Docker's daemon runs healthchecks on their interval; here this loop does, for
# every running container of the project that has one (podman ps shows the result).
health_loop() {
    while sleep 15; do
        for container in $(podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
            podman healthcheck run "$container" >/dev/null 2>&1 || true
        done
    done
}
health_loop & health_pid=$!
cleanup() {
    kill "$health_pid" 2>/dev/null || true
    if [ "${KEEP:-0}" != 1 ]; then
        # Replicas past the first are not known to `down`: remove them by label.
        podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f >/dev/null 2>&1 || true
        compose down -v >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

wait_healthy() {  # CONTAINER TIMEOUT_S
    local deadline=$(( $(date +%s) + $2 )) status
    while [ "$(date +%s)" -lt "$deadline" ]; do
        podman healthcheck run "$1" >/dev/null 2>&1 || true
        status=$(podman inspect "$1" --format '{{.State.Health.Status}}')
        if [ "$status" = healthy ]; then say "$1: healthy"; return 0; fi
        sleep 2
    done
    podman logs --tail 30 "$1" 2>&1 | tee -a "$TRANSCRIPT"
    fail "$1 not healthy within $2s"
}

say "up: postgres, redis"
show compose up -d --no-build --no-deps postgres redis >/dev/null
wait_healthy "${PROJECT}_postgres_1" 120
wait_healthy "${PROJECT}_redis_1" 60
say "up: migrate (alembic upgrade head)"
show compose up --no-build --no-deps migrate
migrate_exit=$(podman inspect "${PROJECT}_migrate_1" --format '{{.State.ExitCode}}')
say "migrate exited with code $migrate_exit"
[ "$migrate_exit" = 0 ] || fail "migrate"
say "up: api"
show compose up -d --no-build --no-deps api >/dev/null
wait_healthy "${PROJECT}_api_1" 120
say "up: two cpu-worker replicas (--profile cpu, --scale cpu-worker=2)"
show compose up -d --no-build --no-deps --scale cpu-worker=2 cpu-worker >/dev/null
wait_healthy "${PROJECT}_cpu-worker_1" 180
wait_healthy "${PROJECT}_cpu-worker_2" 180
show podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --format '{{.Names}}  {{.Status}}  {{.Image}}'
show curl -s "http://127.0.0.1:$api_port/healthz"
echo >> "$TRANSCRIPT"
for container in "${PROJECT}_api_1" "${PROJECT}_cpu-worker_1"; do
    user=$(podman exec "$container" id)
    say "$container runs as: $user"
    case "$user" in uid=10001\(lorita\)*) ;; *) fail "$container is not uid 10001" ;; esac
done
worker_of_hostname() {  # the container whose hostname a worker name (cpu-worker@HOST) ends with
    local host="${1#*@}" container
    for container in "${PROJECT}_cpu-worker_1" "${PROJECT}_cpu-worker_2"; do
        if [ "$(podman inspect "$container" --format '{{.Config.Hostname}}')" = "$host" ]; then
            echo "$container"
        fi
    done
}

# ------------------------------------------------------------------ jobs
say "\$ podman exec ${PROJECT}_api_1 lorita token create check"
token=$(podman exec "${PROJECT}_api_1" lorita token create check | grep -o 'lrt_[A-Za-z0-9_-]*' | head -1)
[ -n "$token" ] || fail "lorita token create printed no token"
say "token created: ${token:0:8}... (the rest kept out of the transcript)"
export LORITA_URL="http://127.0.0.1:$api_port" LORITA_TOKEN="$token"
http_check() { python3 docker/check/check_jobs.py "$@" | tee -a "$TRANSCRIPT"; return "${PIPESTATUS[0]}"; }

say "job 1: fcn on digits, 3 epochs, over HTTP"
short_id=$(http_check submit "$JOB_SHORT" | tail -1)
http_check wait "$short_id" succeeded 600 || fail "job 1"
say "job 1: artifacts downloaded over HTTP:"
http_check download "$short_id" "$WORK/artifacts/before" || fail "job 1 artifacts"

say "job 2: $LONG_EPOCHS epochs; its worker container is stopped mid-job"
long_id=$(http_check submit "$JOB_LONG" | tail -1)
first_worker=$(http_check wait-epoch "$long_id" 3 600 | tail -1) || fail "job 2 never trained 3 epochs"
victim=$(worker_of_hostname "$first_worker")
[ -n "$victim" ] || fail "no container has the hostname of $first_worker"
say "\$ podman stop --time $GRACE_S $victim    (compose stop: SIGTERM, then the grace period)"
stop_start=$(date +%s)
podman stop --time "$GRACE_S" "$victim" >/dev/null
victim_exit=$(podman inspect "$victim" --format '{{.State.ExitCode}}')
say "$victim stopped after $(( $(date +%s) - stop_start ))s, exit code $victim_exit"
podman logs --tail 200 "$victim" 2>&1 | grep -E 'shutting down|requeued|checkpoint' | tail -3 | sed 's/^/      /' | tee -a "$TRANSCRIPT"
[ "$victim_exit" = 0 ] || fail "$victim did not stop cleanly"
http_check wait "$long_id" succeeded 900 || fail "job 2 did not finish after the stop"
http_check resumed "$long_id" "$LONG_EPOCHS" || fail "job 2 did not resume from its checkpoint"
show podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}  {{.Status}}'

# -------------------------------------------------------- backup, restore
# The README's commands, with this project's name (loritacheck_, not lorita_) and
# the base image in place of debian:bookworm-slim; `podman exec -i` for `exec -T`.
cd "$WORK/backup"
today=$(date +%F)
say "backup: \$ podman exec -i ${PROJECT}_postgres_1 pg_dump -U lorita -Fc lorita > lorita-$today.dump"
podman exec -i "${PROJECT}_postgres_1" pg_dump -U lorita -Fc lorita > "lorita-$today.dump"
for volume in artifacts datasets; do
    say "backup: \$ podman run --rm -v ${PROJECT}_$volume:/data:ro -v \"\$PWD\":/backup BASE tar czf /backup/$volume-$today.tgz -C /data ."
    podman run --rm -v "${PROJECT}_$volume:/data:ro" -v "$PWD":/backup "$BASE_IMAGE" \
        tar czf "/backup/$volume-$today.tgz" -C /data . 2>&1 | grep -v -E 'systemd|syslog' || true
done
ls -l | sed 's/^/      /' | tee -a "$TRANSCRIPT"
cd "$REPO"
say "losing data: job 1 deleted over HTTP (its rows and artifacts)"
http_check delete "$short_id"
http_check show "$short_id" && fail "job 1 still there after DELETE"

say "restore: stop api and workers, pg_restore, unpack the volume archives"
# podman-compose stops only the first replica of a scaled service: stop every
# worker container of the project by its label.
show compose stop api >/dev/null
for container in $(podman ps --filter "label=io.podman.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=cpu-worker" --format '{{.Names}}'); do
    show podman stop --time "$GRACE_S" "$container" >/dev/null
done
cd "$WORK/backup"
say "\$ podman exec -i ${PROJECT}_postgres_1 pg_restore -U lorita -d lorita --clean --if-exists < lorita-$today.dump"
podman exec -i "${PROJECT}_postgres_1" pg_restore -U lorita -d lorita --clean --if-exists < "lorita-$today.dump"
for volume in artifacts datasets; do
    say "\$ podman run --rm -v ${PROJECT}_$volume:/data -v \"\$PWD\":/backup:ro BASE tar xzf /backup/$volume-$today.tgz -C /data"
    podman run --rm -v "${PROJECT}_$volume:/data" -v "$PWD":/backup:ro "$BASE_IMAGE" \
        tar xzf "/backup/$volume-$today.tgz" -C /data 2>&1 | grep -v -E 'systemd|syslog' || true
done
cd "$REPO"
show compose up -d --no-build --no-deps api >/dev/null
wait_healthy "${PROJECT}_api_1" 120
say "after the restore:"
http_check show "$short_id" || fail "job 1 not restored"
http_check show "$long_id" || fail "job 2 not restored"
http_check download "$short_id" "$WORK/artifacts/after" || fail "job 1 artifacts after the restore"
diff -r "$WORK/artifacts/before" "$WORK/artifacts/after" >/dev/null || fail "restored artifacts differ"
say "restored artifacts of job 1 are byte-identical to those downloaded before"

say "not exercised here: the 'worker' service's NVIDIA GPU reservation (no GPU on this machine)"
say "build times: $(for n in api worker-cpu postgres-standin redis-standin; do printf '%s %ss  ' "$n" "${built_s[$n]}"; done)"
say "compose check passed in $(( $(date +%s) - STARTED ))s"
