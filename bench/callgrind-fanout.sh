#!/usr/bin/env bash
# Counts the server's instructions for a fixed fan-out: BIN runs under
# valgrind's callgrind on bench/bench.toml, 200 subscribers connect, one
# publisher sends exactly MESSAGES `pub` events (100 bytes, window 64),
# every copy is awaited, then the server stops (SIGTERM) and callgrind
# writes OUT. Prints the server's instructions (Ir) and the deliveries
# loadgen counted. Instruction counts do not depend on what else the
# machine runs, where deliveries/s on a shared machine do
# (docs/BENCHMARKS.md, "Fan-out in instructions").
#   bench/callgrind-fanout.sh BIN MESSAGES OUT [PORT]
# EIO3_SHARE=F (optional; unset, every subscriber speaks Engine.IO v4):
# that share of the subscribers speak Engine.IO v3 as socket.io 2.x
# clients do (loadgen --eio3-share F; bench.toml allows them), e.g.
# EIO3_SHARE=0.5 for every other one: what serving both protocols in one
# room costs per delivery against the all-v4 runs.
# Needs valgrind and target/release/loadgen (cargo build --release -p loadgen).
set -euo pipefail
bin="${1:?usage: bench/callgrind-fanout.sh BIN MESSAGES OUT [PORT]}"
messages="${2:?messages}"
out="${3:?callgrind output file}"
port="${4:-3190}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eio3=()
if [ -n "${EIO3_SHARE:-}" ]; then
  eio3=(--eio3-share "$EIO3_SHARE")
fi
valgrind --tool=callgrind --callgrind-out-file="$out" \
  "$bin" serve --config "$root/bench/bench.toml" --listen "127.0.0.1:$port" >"$out.log" 2>&1 &
server=$!
# Under callgrind the server takes a few seconds to listen.
for _ in $(seq 1 600); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
# --duration-secs only bounds the run: --messages ends it. No warm-up:
# every message counts, and so does the connection set-up (the same for
# any binary; run MESSAGES=0 to see it alone).
"$root/target/release/loadgen" fanout --url "ws://127.0.0.1:$port" --subscribers 200 \
  --payload 100 --window 64 --messages "$messages" --warmup-secs 0 --duration-secs 3600 \
  --drain-secs 10 --json-only --label callgrind ${eio3[@]+"${eio3[@]}"} >"$out.json"
kill -TERM "$server"
wait "$server" || true
ir=$(grep -m1 '^summary:' "$out" | awk '{print $2}')
python3 - "$out.json" "$ir" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
ir = int(sys.argv[2])
per = ir / m["deliveries"] if m["deliveries"] else float("nan")
print(f"Ir {ir} published {m['published']} deliveries {m['deliveries']} "
      f"lost {m['lost']} Ir/delivery {per:.1f}")
PY
