#!/usr/bin/env bash
# rust_socketio 0.6.0 from crates.io against Switchboard (issue 19): builds
# this crate (outside the workspace: its own Cargo.lock, its own target dir
# target/rust-client/) and runs its tests against one server on
# tests/interop/eio3-esn.toml.
#   tests/rust-client/run.sh [BINARY]
# rust_engineio needs OpenSSL (reqwest with native-tls): libssl-dev and
# pkg-config are installed with apt-get when missing (as root).
# SERVER_CMD="node tests/interop/reference-eio3.mjs" runs the tests that need
# no /chat against the reference Node.js server instead (SKIP_CHAT is set).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$(realpath -m "${1:-$root/target/release/switchboard}")"

if ! pkg-config --exists openssl 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "rust-client: installing libssl-dev and pkg-config (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq libssl-dev pkg-config >/dev/null
  else
    echo "rust-client: OpenSSL's development files are missing (install libssl-dev and pkg-config)" >&2
    exit 1
  fi
fi

export CARGO_TARGET_DIR="$root/target/rust-client"
manifest="$root/tests/rust-client/Cargo.toml"
cargo build --locked --tests --manifest-path "$manifest"

cd "$root"
# shellcheck source=../serve.sh
. "$root/tests/serve.sh"
filter=()
if [ -n "${SERVER_CMD:-}" ]; then
  # shellcheck disable=SC2086 # a command line
  serve rust-client $SERVER_CMD
  filter=(--skip chat)
else
  # Recovery off: rust_socketio 0.6.0 cannot read a binary event with more
  # arguments than its attachment, and with recovery on every event to a
  # socket carries its offset last (the reference's too, with
  # connectionStateRecovery): `51-["echo",{"_placeholder":…},"10"]` reaches
  # no handler (the crate takes `echo,,10` as the event's name).
  SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS=0 serve rust-client "$bin" serve --config tests/interop/eio3-esn.toml
fi

if ! SERVER_URL="http://$addr" cargo test --locked --manifest-path "$manifest" -- "${filter[@]}"; then
  echo "--- server output ---"
  tail -50 "$server_log"
  exit 1
fi
