#!/usr/bin/env bash
# The cluster figures (docs/BENCHMARKS.md, "Cluster"): one node alone, one
# node in cluster mode and three nodes on one Redis, alternating, a fresh
# set of processes for every run; fan-out deliveries/s and p99 (the
# publisher on node 1: two thirds of the copies cross the bus), Redis CPU
# and bytes per broadcast, the nodes' bus counters, and 3 × 19,000 idle
# connections against one node's 19,000; and the time from a node's
# SIGKILL until its last client is recovered on the others (3,000 official
# clients through HAProxy; skipped, saying so, without HAProxy or the
# interop tests' npm packages). Prints a table; writes every run as a JSON
# line.
#
#   bench/cluster.sh [--quick] [--reps N] [--only fanout,rate,conns,kill] [--out FILE]
#   make bench-cluster         3 runs of each, docs/cluster-results.jsonl
#   make bench-cluster-quick   small sizes, 1 run, target/bench-cluster/
#
# Starts a throwaway Redis and PostgreSQL (tests/redis/with-redis.sh,
# tests/postgres/with-postgres.sh; a cluster needs both). Needs
# target/release/switchboard and target/release/loadgen (make bench-build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${SB_BENCH_CLUSTER_SERVICES:-}" ]; then
  export SB_BENCH_CLUSTER_SERVICES=1
  exec "$root/tests/redis/with-redis.sh" "$root/tests/postgres/with-postgres.sh" "$0" "$@"
fi
# Without them there is no cluster to measure: an error, or under `make
# bench` (SB_BENCH_CLUSTER_OPTIONAL=1) a note, the suite's results kept.
missing() {
  echo "bench/cluster.sh: $1 is needed ($2); no cluster figures" >&2
  [ -n "${SB_BENCH_CLUSTER_OPTIONAL:-}" ] && exit 0
  exit 1
}
[ -n "${TEST_REDIS_URL:-}" ] || missing Redis "apt-get install redis-server"
[ -n "${TEST_POSTGRES_URL:-}" ] || missing PostgreSQL "apt-get install postgresql"
# Each node holds 19,000 connections plus its own descriptors: as many
# as the machine lets one process have.
ulimit -n "$(ulimit -Hn)"
exec python3 "$root/bench/cluster.py" "$@"
