#!/bin/sh
# First start: create the cluster, the superuser POSTGRES_USER with
# POSTGRES_PASSWORD and the database POSTGRES_DB, as the official image does.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$user" --pwfile="$password_file" --encoding=UTF8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$database" != postgres ]; then
        pg_ctl --wait --silent -o "-c listen_addresses=''" start
        createdb --username="$user" "$database"
        pg_ctl --wait --silent --mode=fast stop
    fi
    echo "postgres-entrypoint: created database $database owned by $user"
fi
if [ "$1" = postgres ]; then
    shift
    exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
