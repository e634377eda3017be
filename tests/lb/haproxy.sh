#!/usr/bin/env bash
# HAProxy (Debian's) in front of Switchboard nodes, with tests/lb/haproxy.cfg:
#
#   tests/lb/haproxy.sh --install        installs HAProxy when missing (apt-get,
#                                        as root); if it cannot, says so and
#                                        fails under CI only (the tests that
#                                        need it skip themselves elsewhere)
#   tests/lb/haproxy.sh LISTEN NODE...   runs it in the foreground on LISTEN
#                                        (host:port) in front of the nodes
#                                        (host:port each, server n1, n2, …)
#
# The second form installs HAProxy first when missing, checks the
# configuration, then replaces itself with haproxy (the caller's pid is
# HAProxy's: SIGTERM or SIGINT stops it). The configuration is read from a
# pipe: nothing is left on disk.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

install() {
  if command -v haproxy >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "haproxy.sh: installing HAProxy (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq haproxy >/dev/null
  fi
  if ! command -v haproxy >/dev/null; then
    echo "haproxy.sh: HAProxy not found (install it: apt-get install haproxy, or run as root to let this script do it)" >&2
    return 1
  fi
}

if [ "${1:-}" = "--install" ]; then
  if install; then
    exit 0
  fi
  if [ -n "${CI:-}" ]; then
    exit 1
  fi
  echo "haproxy.sh: the tests that need HAProxy are skipped" >&2
  exit 0
fi
if [ $# -lt 2 ]; then
  echo "usage: tests/lb/haproxy.sh --install | LISTEN NODE..." >&2
  exit 2
fi
install
listen="$1"
shift

config() {
  cat "$here/haproxy.cfg"
  local n=0
  for node in "$@"; do
    n=$((n + 1))
    echo "    server n$n $node cookie n$n"
  done
}

# Fails here, with HAProxy's own message, on a configuration it refuses.
config "$@" | LB_LISTEN="$listen" haproxy -c -q -f /dev/stdin
export LB_LISTEN="$listen"
exec haproxy -db -f /dev/stdin < <(config "$@")
