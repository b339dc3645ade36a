#!/bin/sh
# First start: a cluster whose TCP logins need the password (local socket: trust, for setup);
# then the server in the foreground, on 127.0.0.1:$POSTGRES_PORT only.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
USER_NAME=${POSTGRES_USER:-airflow}
DB=${POSTGRES_DB:-airflow}
PORT=${POSTGRES_PORT:-5432}
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp) && printf '%s\n' "$POSTGRES_PASSWORD" >"$pw" && chown postgres "$pw"
  runuser -u postgres -- initdb -D "$PGDATA" -U "$USER_NAME" --pwfile="$pw" --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses= -p $PORT" -w start >/dev/null
  runuser -u postgres -- createdb -p "$PORT" -U "$USER_NAME" "$DB"
  runuser -u postgres -- pg_ctl -D "$PGDATA" -w stop >/dev/null
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses=127.0.0.1 -p "$PORT"
