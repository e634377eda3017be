#!/usr/bin/env bash
# Counts what a node spends on broadcasts that come from the bus: two nodes
# of a cluster on a throwaway Redis and PostgreSQL; node 2 runs under
# valgrind's callgrind. 400 subscribers, every other one on each node, the
# publisher on node 1, which sends exactly MESSAGES `pub` events (100
# bytes, window 64); every copy is awaited, then node 2 stops (SIGTERM) and
# callgrind writes OUT. Prints node 2's instructions (Ir) per delivery to
# its 200 subscribers, to set beside bench/callgrind-fanout.sh's figure for
# a broadcast delivered where it is emitted (docs/BENCHMARKS.md, "Cluster").
#   bench/callgrind-cluster.sh BIN MESSAGES OUT
# RECOVERY=0 runs both nodes with socketio.recovery_window_ms = 0.
# NODE=1 runs node 1 under callgrind instead: what a broadcast costs the
# node that emits it (with recovery on, its own 200 deliveries come from
# the bus too); the figures printed are then node 1's.
# Needs valgrind, Redis, PostgreSQL and target/release/loadgen.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${SB_CALLGRIND_CLUSTER_SERVICES:-}" ]; then
  export SB_CALLGRIND_CLUSTER_SERVICES=1
  exec "$root/tests/redis/with-redis.sh" "$root/tests/postgres/with-postgres.sh" "$0" "$@"
fi
bin="${1:?usage: bench/callgrind-cluster.sh BIN MESSAGES OUT}"
messages="${2:?messages}"
out="${3:?callgrind output file}"
[ -n "${TEST_REDIS_URL:-}" ] && [ -n "${TEST_POSTGRES_URL:-}" ] || { echo "Redis and PostgreSQL are needed" >&2; exit 1; }
psql -q "$TEST_POSTGRES_URL" -c "CREATE DATABASE switchboard_bench" >/dev/null
export SWITCHBOARD_STORE_URL="${TEST_POSTGRES_URL%/*}/switchboard_bench"
export SWITCHBOARD_CLUSTER_REDIS_URL="$TEST_REDIS_URL"
if [ "${RECOVERY:-1}" = 0 ]; then
  export SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS=0
fi
dir="$(mktemp -d /tmp/sb-callgrind-cluster.XXXXXX)"
pids=()
stop() {
  if [ ${#pids[@]} -gt 0 ]; then kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap stop EXIT
listening() {
  for _ in $(seq 1 600); do
    if grep -q '^listening on ' "$1" 2>/dev/null; then grep -m1 '^listening on ' "$1" | awk '{print $3}'; return; fi
    sleep 0.1
  done
  cat "$1" >&2; exit 1
}
measured="${NODE:-2}"
case "$measured" in 1|2) ;; *) echo "NODE is 1 or 2" >&2; exit 1 ;; esac
# Starts node $1, under callgrind if it is the one measured.
start_node() {
  local run=()
  [ "$1" = "$measured" ] && run=(valgrind --tool=callgrind --callgrind-out-file="$out")
  SWITCHBOARD_DATA_DIR="$dir" "${run[@]}" "$bin" serve --config "$root/bench/bench.toml" \
    --listen 127.0.0.1:0 >"$dir/node$1.log" 2>&1 &
  pids+=($!)
  [ "$1" = "$measured" ] && callgrind=$!
  return 0
}
start_node 1
addr1="$(listening "$dir/node1.log")"
start_node 2
addr2="$(listening "$dir/node2.log")"
# Both nodes see each other before anything is published.
for _ in $(seq 1 600); do
  if curl -fsS "http://$addr1/metrics" | grep -q '^switchboard_cluster_nodes 2' \
     && curl -fsS "http://$addr2/metrics" | grep -q '^switchboard_cluster_nodes 2'; then break; fi
  sleep 0.2
done
"$root/target/release/loadgen" fanout --url "ws://$addr1,ws://$addr2" --subscribers 400 \
  --payload 100 --window 64 --messages "$messages" --warmup-secs 0 --duration-secs 3600 \
  --drain-secs 10 --json-only --label callgrind-cluster >"$out.json"
kill -TERM "$callgrind"
wait "$callgrind" || true
ir=$(grep -m1 '^summary:' "$out" | awk '{print $2}')
python3 - "$out.json" "$ir" "$measured" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
ir, node = int(sys.argv[2]), int(sys.argv[3])
mine = m["subscribers_ok_by_url"][node - 1] * m["published"]
per = ir / mine if mine else float("nan")
print(f"node {node}: Ir {ir} published {m['published']} its deliveries {mine} "
      f"lost {m['lost']} Ir/delivery {per:.1f}")
PY
