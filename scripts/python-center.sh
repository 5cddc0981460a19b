#!/usr/bin/env bash
# The Rust clients against the ORIGINAL Isek Center (scripts/test.sh runs it; it needs
# PyPI). Installs isek 0.2.1 (without its heavy dependencies), flask and waitress in a
# throwaway virtualenv, and runs the isek-cli test `python_center`, which serves the
# original Flask blueprint with scripts/python_center.py and drives IsekCenterRegistry,
# watch_nodes (the polling fallback) and `isek watch` against it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
python=$(require_python_venv)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
# Exit 3 (not 1) when PyPI cannot be reached, so scripts/test.sh can tell "could not
# check" from "incompatible".
# flask and waitress first: pip's resolver would otherwise list every dependency of
# isek that --no-deps left out.
if ! "$work/venv/bin/pip" install --quiet flask waitress ||
    ! "$work/venv/bin/pip" install --quiet --no-deps isek==0.2.1; then
    echo "python-center: SKIPPED: could not install isek 0.2.1, flask and waitress from PyPI" >&2
    exit 3
fi

export ISEK_ORIGINAL_CENTER_PYTHON="$work/venv/bin/python"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p isek-cli --test python_center --no-fail-fast
else
    cargo test -p isek-cli --test python_center --no-fail-fast
fi
