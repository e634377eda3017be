#!/usr/bin/env bash
# python-socketio from PyPI against Switchboard (issue 19): two venvs under
# target/python-clients/ — python-socketio 5.18.1 (Engine.IO v4) and 4.6.1
# with python-engineio 3.14.2 (Engine.IO v3, the socket.io 2.x era) — each
# running clients_test.py against one server on tests/interop/eio3-esn.toml.
#   tests/python/run.sh [BINARY]
# Installs python3-venv with apt-get when it is missing (as root).
# SERVER_CMD="node tests/interop/reference-eio3.mjs" SKIP_CHAT=1 runs the
# same clients against the reference Node.js server instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$(realpath -m "${1:-$root/target/release/switchboard}")"

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "python-clients: installing python3-venv (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq python3-venv >/dev/null
  else
    echo "python-clients: python3 has no venv module (install python3-venv)" >&2
    exit 1
  fi
fi

declare -A requirements=(
  [v5]='python-socketio[client]==5.18.1'
  [v4]='python-socketio[client]==4.6.1 python-engineio==3.14.2'
)
for v in v5 v4; do
  venv="$root/target/python-clients/$v"
  # Made again when its pins change (the stamp holds what it was made with).
  if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "${requirements[$v]}" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # the requirements are words
    "$venv/bin/pip" install --quiet --disable-pip-version-check ${requirements[$v]}
    echo "${requirements[$v]}" > "$venv/.requirements"
  fi
done

cd "$root"
# shellcheck source=../serve.sh
. "$root/tests/serve.sh"
if [ -n "${SERVER_CMD:-}" ]; then
  # shellcheck disable=SC2086 # a command line
  serve python-clients $SERVER_CMD
else
  serve python-clients "$bin" serve --config tests/interop/eio3-esn.toml
fi

status=0
for v in v5 v4; do
  echo "python-clients: ${requirements[$v]}"
  (cd "$root/tests/python" && SERVER_URL="http://$addr" "$root/target/python-clients/$v/bin/python" -m unittest -v clients_test) || status=1
done
if [ $status != 0 ]; then
  echo "--- server output ---"
  tail -50 "$server_log"
fi
exit $status
