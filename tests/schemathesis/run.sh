#!/usr/bin/env bash
# Runs schemathesis (from PyPI, in a venv under target/) against the publish
# API's OpenAPI document: every operation with generated valid and invalid
# requests; it fails on any 5xx or any response that does not match the
# document.
#   tests/schemathesis/run.sh [BINARY]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${1:-$root/target/release/switchboard}"
venv="$root/target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
# shellcheck source=../serve.sh
. "$root/tests/serve.sh"
serve schemathesis "$bin" serve --config "$root/tests/schemathesis/api.toml"
"$venv/bin/schemathesis" run "http://$addr/api/v1/openapi.json" \
  --header "Authorization: Bearer schemathesis-key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 60 --seed 1 --no-color
