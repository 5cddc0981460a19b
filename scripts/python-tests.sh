#!/usr/bin/env bash
# The pytest suite of the isek_rs Python package (python/tests), as scripts/test.sh
# runs it after the Rust tests: builds the package with maturin into the shared target
# directory, installs it in a virtualenv with pytest and the original ISEK 0.2.1
# (`--no-deps`, plus only what the original modules the tests import need), and runs
# the tests against real centers (the debug `isek` binary) and a real etcd.
#
# Exit 3 when PyPI cannot be reached (scripts/test.sh: a skip offline, a failure in
# CI); pytest's exit 5 ("no tests ran") is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
require_files "${ISEK_TEST_FILES[@]}"
python=$(require_python_venv)

target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
work=$target/python-tests
venv=$work/venv
rm -rf "$work/wheels"
mkdir -p "$work/wheels"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# pytest and mypy (test_stubs.py checks the type stubs); the original modules the
# tests load, and what they import:
#   isek.node.isek_center_registry: requests;  isek.node.etcd_registry: etcd3gw, ecdsa;
#   isek.utils.log: rich;  isek.node.node_v2 (via isek.protocol.a2a_protocol):
#   a2a-sdk (0.2, whose A2AClient it uses), httpx, uvicorn.
if ! "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "maturin>=1.5,<2" pytest mypy requests etcd3gw ecdsa rich "a2a-sdk<0.3" httpx uvicorn ||
    ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps isek==0.2.1; then
    echo "python-tests: SKIPPED: could not install the test dependencies from PyPI" >&2
    exit 3
fi

# The tests start centers from the debug binary (already built by the Rust steps).
cargo build -p isek-cli
# One build cache for cargo and maturin: CARGO_TARGET_DIR is passed through.
"$venv/bin/maturin" build --quiet --manifest-path python/Cargo.toml \
    --interpreter "$venv/bin/python" --out "$work/wheels"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps \
    "$work"/wheels/isek_rs-*.whl

status=0
ISEK_BIN="$target/debug/isek" ISEK_ETCD_BIN=/usr/bin/etcd \
    "$venv/bin/python" -m pytest python/tests -p no:cacheprovider -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "python-tests: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
