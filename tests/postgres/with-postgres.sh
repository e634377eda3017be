#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server on loopback and its URL in
# TEST_POSTGRES_URL (superuser `postgres`, trust auth, database `postgres`):
#   tests/postgres/with-postgres.sh cargo test --workspace
# Installs PostgreSQL from Debian's packages when missing (as root). The
# server's files live in a temporary folder, removed with the server when the
# command ends, whatever its outcome.
set -euo pipefail

find_bindir() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1; }

bindir="$(find_bindir)"
if [ -z "$bindir" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "with-postgres: installing PostgreSQL (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
    bindir="$(find_bindir)"
  fi
fi
if [ -z "$bindir" ]; then
  if [ -n "${CI:-}" ]; then
    echo "with-postgres: PostgreSQL not found and cannot be installed here" >&2
    exit 1
  fi
  # Outside CI the PostgreSQL tests skip themselves without TEST_POSTGRES_URL.
  echo "with-postgres: PostgreSQL not found (install it, or run as root to let this script do it);" \
       "running without it: the PostgreSQL tests are skipped" >&2
  exec "$@"
fi

dir="$(mktemp -d /tmp/sb-postgres.XXXXXX)"
stop() {
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
as_owner=()
trap stop EXIT
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: run it as the `postgres` user.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  as_owner=(runuser -u postgres --)
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

"${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
"${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $port -k $dir -F -c max_connections=200" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }

export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
"$@"
