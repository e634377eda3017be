#!/usr/bin/env bash
# Starts Switchboard in the foreground on 127.0.0.1:PORT with CONFIG (default
# bench/bench.toml: the benchmark behaviour, every socket joins room `all`;
# `pub` broadcasts `msg` with the same payload to `all`; `echo` acks its
# arguments; bench/esn.toml: /chat and /notifications for the ESN scenarios).
#   bench/server.sh PORT [CONFIG]
set -euo pipefail
port="${1:?usage: bench/server.sh PORT [CONFIG]}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="${2:-$root/bench/bench.toml}"
bin="${SWITCHBOARD_BENCH_BIN:-$root/target/release/switchboard}"
[ -x "$bin" ] || { echo "bench/server.sh: $bin not built (cargo build --release -p switchboard)" >&2; exit 1; }
# Every SWITCHBOARD_* variable is a configuration key to the server: this
# one is the script's own.
unset SWITCHBOARD_BENCH_BIN
exec "$bin" serve --config "$config" --listen "127.0.0.1:$port"
