#!/usr/bin/env bash
# Starts Switchboard in the foreground with the benchmark behaviour on
# 127.0.0.1:PORT: every socket joins room `all`; `pub` broadcasts `msg` with the
# same payload to `all`; `echo` acks its arguments.
#   bench/server.sh PORT
set -euo pipefail
port="${1:?usage: bench/server.sh PORT}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHBOARD_BENCH_BIN:-$root/target/release/switchboard}"
[ -x "$bin" ] || { echo "bench/server.sh: $bin not built (cargo build --release -p switchboard)" >&2; exit 1; }
# Every SWITCHBOARD_* variable is a configuration key to the server: this
# one is the script's own.
unset SWITCHBOARD_BENCH_BIN
exec "$bin" serve --config "$root/bench/bench.toml" --listen "127.0.0.1:$port"
