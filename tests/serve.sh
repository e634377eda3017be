# Sourced by the scripts that test against one server (tests/schemathesis,
# tests/python, tests/rust-client):
#   serve NAME COMMAND...
# starts COMMAND in the background (a server printing `listening on
# HOST:PORT`, as `switchboard serve` does), in its own data folder, stops it
# and removes its files when the script exits, and sets `addr` to HOST:PORT
# once it listens (10 s at most; the script exits 1 with its output if not),
# `server_log` to the file holding its output.
serve() {
  local name="$1"
  shift
  server_log="$(mktemp)"
  server_data="$(mktemp -d)"
  SWITCHBOARD_DATA_DIR="$server_data" "$@" > "$server_log" 2>&1 &
  server_pid=$!
  trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -rf "$server_log" "$server_data"' EXIT
  addr=""
  for _ in $(seq 100); do
    addr="$(sed -n 's/^listening on //p' "$server_log" | head -n1)"
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  echo "$name: the server did not start"
  cat "$server_log"
  exit 1
}
