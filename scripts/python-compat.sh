#!/usr/bin/env bash
# Compatibility check with the original Python ISEK client (scripts/test.sh runs it;
# it needs PyPI). Installs isek 0.2.1 (without its heavy dependencies) and requests in a
# throwaway virtualenv, starts `isek center --in-memory` on a free port, and runs
# scripts/python_compat.py against it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
python=$(require_python_venv)

work=$(mktemp -d)
center_pid=""
cleanup() {
    [ -n "$center_pid" ] && kill "$center_pid" 2>/dev/null && wait "$center_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$python" -m venv "$work/venv"
# Exit 3 (not 1) when PyPI cannot be reached, so scripts/test.sh can tell "could not
# check" from "incompatible".
if ! "$work/venv/bin/pip" install --quiet --no-deps isek==0.2.1 ||
    ! "$work/venv/bin/pip" install --quiet requests; then
    echo "python-compat: SKIPPED: could not install isek 0.2.1 from PyPI" >&2
    exit 3
fi

# ISEK_PROFILE=debug reuses the test build (scripts/test.sh); release by default.
profile=${ISEK_PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release -p isek-cli
else
    cargo build -p isek-cli
fi
"${CARGO_TARGET_DIR:-target}/$profile/isek" center --listen 127.0.0.1:0 --in-memory >"$work/center.out" 2>"$work/center.err" &
center_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/center.out" 2>/dev/null && break
    sleep 0.1
done
port=$(sed -n 's/^isek center listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/center.out")
[ -n "$port" ] || { cat "$work/center.err" >&2; echo "center did not start" >&2; exit 1; }
"$work/venv/bin/python" scripts/python_compat.py "$port"
