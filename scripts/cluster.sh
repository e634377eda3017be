#!/usr/bin/env bash
# A Switchboard cluster on this machine, to try one: Redis, PostgreSQL, three
# nodes serving the web client, HAProxy in front of them (as a deployment has
# it: WebSocket passed through, sticky long-polling, health checks on
# /readyz). Prints the URL to open; Ctrl-C (or SIGTERM) stops everything.
#
#   scripts/cluster.sh [BINARY]    BINARY: default target/release/switchboard
#   make cluster                   builds the web client and the binary, then this
#
# What is missing is installed from Debian's packages (as root): Redis and
# PostgreSQL by tests/redis/with-redis.sh and tests/postgres/with-postgres.sh,
# whose servers are throwaway (on loopback, their files removed when this
# stops), HAProxy by tests/lb/haproxy.sh. Environment:
#   CLUSTER_PORT    the load balancer's port on 127.0.0.1 (default 8080; 0: a free one)
#   CLUSTER_NODES   how many nodes (default 3)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
self="$root/scripts/cluster.sh"

# Redis and PostgreSQL first: this script runs again under the two scripts
# that start them (and stop them once it ends).
if [ -z "${SB_CLUSTER_SERVICES:-}" ]; then
  export SB_CLUSTER_SERVICES=1
  exec "$root/tests/redis/with-redis.sh" "$root/tests/postgres/with-postgres.sh" "$self" "$@"
fi

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

bin="${1:-$root/target/release/switchboard}"
port="${CLUSTER_PORT:-8080}"
count="${CLUSTER_NODES:-3}"
[ -x "$bin" ] || die "no binary at $bin: run \`make cluster\`, which builds it"
[ -f "$root/web/dist/index.html" ] || die "the web client is not built: run \`make cluster\` (or \`make web\`)"
[ -n "${TEST_REDIS_URL:-}" ] || die "Redis is needed: install it (apt-get install redis-server) or run as root"
[ -n "${TEST_POSTGRES_URL:-}" ] || die "PostgreSQL is needed: install it (apt-get install postgresql) or run as root"
"$root/tests/lb/haproxy.sh" --install
command -v haproxy >/dev/null || die "HAProxy is needed: install it (apt-get install haproxy) or run as root"
if [ "$port" = 0 ]; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi

dir="$(mktemp -d /tmp/sb-cluster.XXXXXX)"
pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap stop EXIT
# Ctrl-C is how this ends: a clean exit, not an error. (The nodes and
# HAProxy get the terminal's SIGINT too, and stop by themselves.)
interrupted=""
trap 'exit 0' INT TERM

# One database, one Redis, one secret: every node must accept the tokens
# any node signed (dev mode's sign-in signs with auth.hs256_secret).
psql -q "$TEST_POSTGRES_URL" -c "CREATE DATABASE switchboard" >/dev/null
store="${TEST_POSTGRES_URL%/*}/switchboard"
secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$dir/cluster.toml" <<TOML
# Written by scripts/cluster.sh: the nodes of a cluster to try on one machine.
listen = ["127.0.0.1:0"]
# The web client's sign-in by name (POST /dev/token): a trial, not production.
dev_mode = true

[server]
# HAProxy says who the client is (X-Forwarded-For).
trusted_proxies = ["127.0.0.1"]
shutdown_grace_ms = 2000

[auth]
hs256_secret = "$secret"

[store]
url = "$store"

[cluster]
redis_url = "$TEST_REDIS_URL"

[web]
dir = "$root/web/dist"
TOML

# Waits until file $1 has a line `listening on ADDR` (process $2 alive), prints ADDR.
listening() {
  local line
  for _ in $(seq 1 300); do
    line="$(grep -m1 '^listening on ' "$1" 2>/dev/null || true)"
    if [ -n "$line" ]; then
      echo "${line#listening on }"
      return
    fi
    kill -0 "$2" 2>/dev/null || { cat "$1" >&2; die "a node exited at start"; }
    sleep 0.1
  done
  cat "$1" >&2
  die "a node did not start within 30 s"
}

addrs=()
for i in $(seq 1 "$count"); do
  mkdir -p "$dir/node$i"
  # One after the other: the first creates the tables.
  SWITCHBOARD_DATA_DIR="$dir/node$i" "$bin" serve --config "$dir/cluster.toml" >"$dir/node$i.log" 2>&1 &
  pids+=($!)
  addr="$(listening "$dir/node$i.log" "$!")"
  addrs+=("$addr")
done

"$root/tests/lb/haproxy.sh" "127.0.0.1:$port" "${addrs[@]}" >"$dir/haproxy.log" 2>&1 &
pids+=($!)
lb="http://127.0.0.1:$port"
# Ready once HAProxy's health checks see every node ready.
if ! python3 - "$lb" "$count" "$!" <<'PY'
import os, sys, time, urllib.request
url, count, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("HAProxy exited (is the port taken? CLUSTER_PORT=... picks another; 0: a free one)")
    try:
        rows = urllib.request.urlopen(url + "/lb/stats;csv", timeout=2).read().decode().splitlines()
        up = [r for r in rows if r.startswith("nodes,n") and r.split(",")[17] == "UP"]
        if len(up) == count:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("HAProxy did not see every node ready within 30 s")
PY
then
  cat "$dir/haproxy.log" >&2
  exit 1
fi

cat <<MSG
Switchboard cluster: $count nodes behind HAProxy, on Redis and PostgreSQL (throwaway).

  Open $lb/ in a browser and sign in with any name; another window
  (a private one) signed in as someone else is the other side of a chat.

  nodes:          ${addrs[*]} (each serves /readyz and /metrics)
  HAProxy stats:  $lb/lb/stats (which node serves whom)
  logs:           $dir/ (removed on exit)

Ctrl-C stops everything.
MSG

# Until Ctrl-C, or until a node or HAProxy exits on its own. A Ctrl-C
# may end the wait with a child that stopped on it: the trap, run once the
# wait returns, says so.
trap 'interrupted=1' INT TERM
set +e
wait -n "${pids[@]}"
status=$?
set -e
if [ -n "$interrupted" ]; then
  exit 0
fi
say "a process exited on its own (status $status); its log:"
tail -n 20 "$dir"/*.log >&2
exit 1
