#!/bin/sh
# First start: a cluster owned by $POSTGRES_USER with password (scram-sha-256) authentication and
# the database $POSTGRES_DB. Every start: listen on 127.0.0.1:$POSTGRES_PORT only (the host network).
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set: the stack's database needs a password}"
POSTGRES_USER=${POSTGRES_USER:-dagster}
POSTGRES_DB=${POSTGRES_DB:-dagster}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    "$BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C
    rm -f "$pwfile"
    # The database, created through the local socket before the server listens on TCP.
    "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -k /run/postgresql" -w start
    "$BIN/psql" -h /run/postgresql -U "$POSTGRES_USER" -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE \"$POSTGRES_DB\""
    "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses=127.0.0.1 -p "$POSTGRES_PORT" -k /run/postgresql
