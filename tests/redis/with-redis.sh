#!/usr/bin/env bash
# Runs a command with a throwaway Redis server on loopback and its URL in
# TEST_REDIS_URL:
#   tests/redis/with-redis.sh cargo test --workspace
# Installs redis-server from Debian's packages when missing (as root). The
# server keeps nothing on disk (no RDB, no AOF); its folder is temporary and
# removed with the server when the command ends, whatever its outcome.
set -euo pipefail

if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "with-redis: installing Redis (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq redis-server >/dev/null
  fi
fi
if ! command -v redis-server >/dev/null; then
  if [ -n "${CI:-}" ]; then
    echo "with-redis: Redis not found and cannot be installed here" >&2
    exit 1
  fi
  # Outside CI the Redis tests skip themselves without TEST_REDIS_URL.
  echo "with-redis: Redis not found (install it, or run as root to let this script do it);" \
       "running without it: the cluster tests are skipped" >&2
  exec "$@"
fi

dir="$(mktemp -d /tmp/sb-redis.XXXXXX)"
pid=""
stop() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap stop EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
  --daemonize no --logfile "$dir/server.log" &
pid=$!
for _ in $(seq 1 100); do
  if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$dir/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

export TEST_REDIS_URL="redis://127.0.0.1:$port"
echo "with-redis: Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$port" >&2
"$@"
