#!/bin/sh
# Entrypoint of localhost/pgjobs-postgres:15 (built by deploy/image/build.sh), the dev
# PostgreSQL of the Helm chart (helm/pgjobs/templates/postgresql.yaml). Runs as the postgres
# user (uid/gid 999) and writes only to $PGDATA, /var/run/postgresql and /tmp, so a read-only
# root filesystem works.
#
# Environment: POSTGRES_PASSWORD (required on first start), POSTGRES_USER (default postgres),
#              POSTGRES_DB (default: the user's name), PGDATA (default set by the image).
#
# First start (no $PGDATA/PG_VERSION): initdb with POSTGRES_USER as the superuser and its
# password, scram-sha-256 for every TCP connection (trust only over the Unix socket inside the
# container), listen on all addresses, create POSTGRES_DB. Then exec postgres in the
# foreground as PID 1: signals reach it (the image's stop signal is SIGINT, a fast shutdown).
# Arguments are passed on to postgres (e.g. -c log_statement=all).
set -eu

: "${PGDATA:?PGDATA must be set}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"

# An SQL identifier, quoted: "a""b" for a"b.
ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "pgjobs-postgres: POSTGRES_PASSWORD is empty; set it for the first start (initdb)" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
    rm -f "$pwfile"
    trap - EXIT
    # initdb's host lines cover loopback only; pods connect from the pod network.
    printf '%s\n' 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
    printf '%s\n' "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    if [ "$db" != postgres ]; then
        # Single-user mode: no server to start and stop, nothing listening yet.
        echo "CREATE DATABASE $(ident "$db") OWNER $(ident "$user")" \
            | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "pgjobs-postgres: initialised $PGDATA (user $user, database $db)"
fi

exec postgres -D "$PGDATA" "$@"
