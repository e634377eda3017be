#!/usr/bin/env bash
# Conformance harness: runs the official Engine.IO and Socket.IO protocol test
# suites (unmodified) against a server listening on port 3000.
#
# Usage:
#   tests/conformance/run.sh [SUITES_DIR]
#   make conformance SUITES=DIR [RUNS=5] [SERVER="cmd ..."]
#
# Environment (all optional except the suites directory):
#   SUITES          directory holding the two protocol repos (or pass it as $1):
#                   DIR/engine.io-protocol/test-suite and
#                   DIR/socket.io-protocol/test-suite; a folder whose name merely
#                   contains engine.io-protocol / socket.io-protocol is accepted
#                   too (e.g. socketio+engine.io-protocol, engine.io-protocol-main).
#   ENGINEIO_SUITE  explicit path to the engine.io test-suite/ (overrides SUITES)
#   SOCKETIO_SUITE  explicit path to the socket.io test-suite/ (overrides SUITES)
#   RUNS            how many times each suite is run (default 5)
#   SERVER          server command, run from the repo root through bash
#                   (default: target/release/switchboard serve --config tests/conformance.toml)
#                   e.g. SERVER="node tests/conformance/reference/server.mjs"
#   ONLY            "engine.io" or "socket.io" to run only one suite (default both)
#   STARTUP_TIMEOUT seconds to wait for the server to answer (default 30)
#   RUN_TIMEOUT     hard limit in seconds for one mocha run (default 300)
#   OUT             keep the mocha JSON reports and the server log in this
#                   directory (default: a temporary directory, deleted at exit)
#
# The suites talk to http://localhost:3000 (which Node may resolve to ::1 or
# 127.0.0.1); the port is not configurable there, so it is not here either.
#
# The server is started once and kept running across all runs of both suites.
# Exit status: 2 usage / missing suites / npm ci failure, 3 port 3000 already
# in use, 1 server did not come up; otherwise 0 -- the counts are the result.

set -u
set -o pipefail

PORT=3000
PROBE_URL="http://127.0.0.1:${PORT}/socket.io/?EIO=4&transport=polling"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

SUITES="${1:-${SUITES:-}}"
RUNS="${RUNS:-5}"
SERVER_FROM_ENV="${SERVER:-}"
SERVER="${SERVER:-target/release/switchboard serve --config tests/conformance.toml}"
ONLY="${ONLY:-}"
STARTUP_TIMEOUT="${STARTUP_TIMEOUT:-30}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"

die() { local code="$1"; shift; echo "conformance: $*" >&2; exit "$code"; }

command -v node >/dev/null || die 2 "node is required"
command -v npm  >/dev/null || die 2 "npm is required"
command -v curl >/dev/null || die 2 "curl is required"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die 2 "RUNS must be a positive integer (got '$RUNS')"
[[ "$STARTUP_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die 2 "STARTUP_TIMEOUT must be a positive integer"
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die 2 "RUN_TIMEOUT must be a positive integer"

# ------------------------------------------------------------------ suites
# find_suite NAME  ->  prints the test-suite/ directory for NAME
find_suite() {
    local name="$1" d
    for d in "$SUITES/$name/test-suite" "$SUITES"/*"$name"*/test-suite; do
        if [[ -f "$d/test-suite.js" && -f "$d/package.json" ]]; then
            (cd "$d" && pwd)
            return 0
        fi
    done
    return 1
}

declare -A SUITE_DIR=()
SUITE_NAMES=()
case "$ONLY" in
    "")         SUITE_NAMES=(engine.io socket.io) ;;
    engine.io)  SUITE_NAMES=(engine.io) ;;
    socket.io)  SUITE_NAMES=(socket.io) ;;
    *)          die 2 "ONLY must be 'engine.io' or 'socket.io' (got '$ONLY')" ;;
esac

for s in "${SUITE_NAMES[@]}"; do
    if [[ "$s" == engine.io && -n "${ENGINEIO_SUITE:-}" ]]; then
        dir="$ENGINEIO_SUITE"
    elif [[ "$s" == socket.io && -n "${SOCKETIO_SUITE:-}" ]]; then
        dir="$SOCKETIO_SUITE"
    else
        [[ -n "$SUITES" ]] || die 2 "usage: $0 SUITES_DIR   (or SUITES=DIR; see the header of $0)"
        [[ -d "$SUITES" ]] || die 2 "suites directory '$SUITES' does not exist"
        dir="$(find_suite "$s-protocol")" \
            || die 2 "no $s-protocol/test-suite/test-suite.js under '$SUITES'"
    fi
    [[ -f "$dir/test-suite.js" ]] || die 2 "'$dir' has no test-suite.js"
    SUITE_DIR[$s]="$(cd "$dir" && pwd)"
done

for s in "${SUITE_NAMES[@]}"; do
    dir="${SUITE_DIR[$s]}"
    if [[ ! -x "$dir/node_modules/.bin/mocha" ]]; then
        echo "conformance: npm ci in $dir" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) \
            || die 2 "npm ci failed in $dir"
    fi
done

# ------------------------------------------------------------------ workspace
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT" || die 2 "cannot create OUT='$OUT'"
    WORK="$(cd "$OUT" && pwd)"
    KEEP_WORK=1
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/conformance.XXXXXX")"
    KEEP_WORK=0
fi
SERVER_LOG="$WORK/server.log"
SERVER_PID=""

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        # The server runs in its own process group (setsid): signal the group
        # so wrappers such as `npm start` or `cargo run` take their children along.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            kill -KILL -- "-$SERVER_PID" 2>/dev/null || kill -KILL "$SERVER_PID" 2>/dev/null
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

cleanup() {
    stop_server
    if [[ "$KEEP_WORK" == 0 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

probe() { # prints the HTTP status of the handshake probe ("000" = no answer)
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PROBE_URL" 2>/dev/null || true
}

# ------------------------------------------------------------------ server
code="$(probe)"
if [[ "$code" != 000 ]]; then
    die 3 "something is already answering on port $PORT (HTTP $code); stop it first"
fi

if [[ -z "${SERVER_FROM_ENV}" && ! -x "$ROOT/target/release/switchboard" ]]; then
    die 1 "target/release/switchboard not found; build it first (cargo build --release -p switchboard) or set SERVER"
fi
echo "conformance: starting server: $SERVER" >&2
cd "$ROOT" || die 2 "cannot cd to $ROOT"
if command -v setsid >/dev/null; then
    setsid bash -c "$SERVER" >"$SERVER_LOG" 2>&1 </dev/null &
else
    bash -c "$SERVER" >"$SERVER_LOG" 2>&1 </dev/null &
fi
SERVER_PID=$!

deadline=$(( SECONDS + STARTUP_TIMEOUT ))
code=000
while :; do
    code="$(probe)"
    [[ "$code" != 000 ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        wait "$SERVER_PID" 2>/dev/null; rc=$?
        echo "conformance: server exited (status $rc) before answering on port $PORT" >&2
        echo "---- server output (last 40 lines) ----" >&2
        tail -n 40 "$SERVER_LOG" >&2
        SERVER_PID=""
        exit 1
    fi
    if (( SECONDS >= deadline )); then
        echo "conformance: server did not answer $PROBE_URL within ${STARTUP_TIMEOUT}s" >&2
        echo "---- server output (last 40 lines) ----" >&2
        tail -n 40 "$SERVER_LOG" >&2
        exit 1
    fi
    sleep 0.2
done
echo "conformance: server is up (pid $SERVER_PID, handshake probe answered HTTP $code)" >&2
[[ "$code" == 200 ]] || echo "conformance: warning: handshake probe answered HTTP $code, not 200" >&2

# The suites connect to "localhost", which Node may resolve to ::1 first.
# Node 20 falls back between address families, but say so if localhost
# itself does not reach the server.
if ! node -e '
    const http = require("node:http");
    const req = http.get("http://localhost:'"$PORT"'/socket.io/?EIO=4&transport=polling",
        { timeout: 2000 }, (res) => { res.resume(); process.exit(0); });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => { console.error(e.message); process.exit(1); });
' 2>"$WORK/localhost-probe.err"; then
    echo "conformance: warning: Node could not reach http://localhost:$PORT ($(head -n1 "$WORK/localhost-probe.err")); the suites will fail -- listen on both 127.0.0.1 and ::1" >&2
fi

# ------------------------------------------------------------------ runs
# Summarise one mocha JSON report as tab-separated lines:
#   COUNTS <passed> <failed> <pending>
#   FAIL <full title> <first line of the error>
summarise='
const fs = require("node:fs");
const [file, stdoutFile] = process.argv.slice(1);
function load(f) {
  try {
    const text = fs.readFileSync(f, "utf8");
    const start = text.indexOf("{");
    return start < 0 ? null : JSON.parse(text.slice(start));
  } catch { return null; }
}
const r = load(file) || load(stdoutFile);
if (!r || !r.stats) { console.log("NOREPORT"); process.exit(0); }
const oneLine = (s) => String(s ?? "").split("\n").map((l) => l.trim()).find((l) => l) || "";
const failures = r.failures || [];
console.log(["COUNTS", r.stats.passes || 0, failures.length, r.stats.pending || 0].join("\t"));
for (const f of failures) {
  const err = f.err || {};
  let msg = oneLine(err.message) || oneLine(err.stack) || "(no error message)";
  if (err.code && !msg.includes(err.code)) msg = err.code + ": " + msg;
  console.log(["FAIL", oneLine(f.fullTitle || f.title), msg].join("\t"));
}
'

declare -A RESULT=()   # RESULT[suite,run] = "passed/total" or "ERR"
declare -A TOTAL_PASS=() TOTAL_ALL=()
GRAND_PASS=0 GRAND_ALL=0
SERVER_DIED=0

printf '\n%-10s %4s %7s %7s %7s  %s\n' suite run passed failed total notes
printf '%-10s %4s %7s %7s %7s  %s\n' ---------- ---- ------- ------- ------- -----

for s in "${SUITE_NAMES[@]}"; do
    dir="${SUITE_DIR[$s]}"
    TOTAL_PASS[$s]=0 TOTAL_ALL[$s]=0
    for run in $(seq 1 "$RUNS"); do
        report="$WORK/$s-run$run.json"
        stdout="$WORK/$s-run$run.stdout"
        stderr="$WORK/$s-run$run.stderr"
        rm -f "$report"
        note=""
        if (( SERVER_DIED )); then note="server not running"; fi
        (cd "$dir" && timeout -k 10 "$RUN_TIMEOUT" node_modules/.bin/mocha test-suite.js \
            --reporter json --reporter-option "output=$report" --exit) \
            >"$stdout" 2>"$stderr"
        mrc=$?
        if (( mrc == 124 || mrc == 137 )); then
            note="${note:+$note; }mocha killed after ${RUN_TIMEOUT}s"
        fi

        passed="" failed="" pending=0
        fails=()
        while IFS=$'\t' read -r kind a b c; do
            case "$kind" in
                COUNTS) passed="$a" failed="$b" pending="$c" ;;
                FAIL)   fails+=("$a"$'\t'"$b") ;;
            esac
        done < <(node -e "$summarise" "$report" "$stdout")

        if [[ -z "$passed" ]]; then
            RESULT[$s,$run]="ERR"
            printf '%-10s %4s %7s %7s %7s  %s\n' "$s" "$run" - - - \
                "${note:+$note; }no mocha report (exit $mrc): $(grep -m1 -v '^\s*$' "$stderr" | cut -c1-160)"
        else
            total=$(( passed + failed ))
            RESULT[$s,$run]="$passed/$total"
            TOTAL_PASS[$s]=$(( TOTAL_PASS[$s] + passed ))
            TOTAL_ALL[$s]=$(( TOTAL_ALL[$s] + total ))
            (( pending > 0 )) && note="${note:+$note; }$pending pending"
            printf '%-10s %4s %7s %7s %7s  %s\n' "$s" "$run" "$passed" "$failed" "$total" "$note"
            for f in "${fails[@]}"; do
                printf '           FAIL %s\n                -> %s\n' "${f%%$'\t'*}" "${f#*$'\t'}"
            done
        fi

        if (( ! SERVER_DIED )) && ! kill -0 "$SERVER_PID" 2>/dev/null; then
            SERVER_DIED=1
            echo "conformance: server exited during $s run $run" >&2
            tail -n 20 "$SERVER_LOG" >&2
        fi
    done
done

# ------------------------------------------------------------------ summary
echo
for s in "${SUITE_NAMES[@]}"; do
    line="$s suite:"
    for run in $(seq 1 "$RUNS"); do line+=" ${RESULT[$s,$run]}"; done
    line+="  (${TOTAL_PASS[$s]}/${TOTAL_ALL[$s]} over $RUNS runs)"
    echo "$line"
    GRAND_PASS=$(( GRAND_PASS + TOTAL_PASS[$s] ))
    GRAND_ALL=$(( GRAND_ALL + TOTAL_ALL[$s] ))
done
echo "total: $GRAND_PASS/$GRAND_ALL passed"
if (( SERVER_DIED )); then
    echo "note: the server exited before the end; its log: $( (( KEEP_WORK )) && echo "$SERVER_LOG" || echo "rerun with OUT=DIR to keep it")"
fi
if (( KEEP_WORK )); then echo "reports and server log kept in $WORK"; fi
exit 0
