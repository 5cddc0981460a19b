#!/usr/bin/env bash
# schemathesis (PyPI) against a live center, from the center's own OpenAPI document
# (GET /openapi.json): every generated request, valid or not, must get an answer that
# the document describes (status, content type, headers, body schema), and never a 5xx.
# scripts/test.sh runs it after the Rust tests, with the debug binary they built.
#
# The checks are the five conformance ones; `positive_data_acceptance` is left out
# because the document does not express the all-or-none rule of the signed fields
# (a schema-valid half-signed body is a 400). /v1/watch is excluded: it streams until
# the client hangs up. Exit 3 when PyPI cannot be reached (a skip offline, a failure
# in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
python=$(require_python_venv)

target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
venv=$target/schemathesis/venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    "$python" -m venv "$venv"
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4.3,<5"; then
        echo "schemathesis: SKIPPED: could not install schemathesis from PyPI" >&2
        exit 3
    fi
fi

cargo build -p isek-cli
work=$(mktemp -d)
center_pid=
cleanup() {
    [ -n "$center_pid" ] && kill "$center_pid" 2>/dev/null && wait "$center_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
# A signed-capable center with an admin token, so the admin path is served too.
head -c 24 /dev/urandom | base64 > "$work/admin-token"
"$target/debug/isek" center --listen 127.0.0.1:0 --data-dir "$work/data" \
    --admin-token-file "$work/admin-token" >"$work/out" 2>"$work/err" &
center_pid=$!
url=
for _ in $(seq 1 300); do
    url=$(sed -n 's/^isek center listening on //p' "$work/out")
    [ -n "$url" ] && break
    kill -0 "$center_pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "schemathesis: the center did not announce its address" >&2; exit 1; }

"$venv/bin/schemathesis" run "$url/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-path /v1/watch \
    --max-examples "${ISEK_SCHEMATHESIS_EXAMPLES:-200}" \
    --workers 2 --seed "${ISEK_SCHEMATHESIS_SEED:-1}" \
    --warnings off
