#!/usr/bin/env bash
# Runs the browser tests (tests/browser/*.test.mjs) against a hub binary:
#   tests/browser/run.sh HUB_BIN
# Installs Debian's Chromium when it is missing (as root, like
# tests/postgres/with-postgres.sh does for PostgreSQL), installs the npm
# packages (npm ci), then runs the tests with node's test runner (TAP).
# The web client must be built first (make web): the hub serves web/dist.
# Environment: CHROMIUM (default /usr/bin/chromium), BROWSER_WEB_DIR (default
# <repo>/web/dist). Screenshots go to <repo>/target/browser-screenshots/.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 HUB_BIN" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
hub_bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$chromium" ] && [ "$chromium" = /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "browser tests: installing Chromium (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null
  fi
fi
if [ ! -x "$chromium" ]; then
  echo "browser tests: no Chromium at $chromium (apt-get install chromium, as root, or set CHROMIUM)" >&2
  exit 1
fi
web_dir="${BROWSER_WEB_DIR:-$repo/web/dist}"
if [ ! -f "$web_dir/index.html" ]; then
  echo "browser tests: the web client is not built ($web_dir/index.html is missing): run make web" >&2
  exit 1
fi
if [ ! -x "$hub_bin" ]; then
  echo "browser tests: no hub binary at $hub_bin" >&2
  exit 1
fi

cd "$here"
npm ci --no-audit --no-fund --loglevel=error
rm -rf "$repo/target/browser-screenshots"
export BROWSER_HUB_BIN="$hub_bin" BROWSER_WEB_DIR="$web_dir" CHROMIUM="$chromium"
echo "browser tests: $("$chromium" --version 2>/dev/null || echo "$chromium"), hub $hub_bin, client $web_dir" >&2
# A hung browser or hub must not hold CI: the whole run is bounded (one test
# may take up to 180 s, package.json's --test-timeout; the files run one at a time).
exec timeout --kill-after=15 600 npm test --silent
