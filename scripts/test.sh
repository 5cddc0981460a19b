#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run) and as a developer runs it on a fresh
# machine: install what is missing, then format check, clippy with -D warnings, and
# every test of the workspace. Tests start their own servers (centers, etcd) on free
# loopback ports; nothing needs to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
trap 'status=$?; [ "$status" -ne 0 ] && printf "\n==> FAILED (exit %s): %s\n" "$status" "${current:-setup}"' EXIT

# System packages: protoc builds etcd-client; the etcd binary is started by tests.
current="install missing system packages"
source scripts/packages.sh
require_commands protoc:protobuf-compiler etcd:etcd-server

# Toolchain components, when rustup manages the toolchain and they are missing.
if command -v rustup >/dev/null 2>&1; then
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi

# CI builds from scratch once: incremental compilation and full debug info only cost
# time there (line tables still give backtraces with line numbers).
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only
fi

current="cargo fmt --all -- --check"
step "$current"
cargo fmt --all -- --check

current="cargo clippy --workspace --all-targets -- -D warnings"
step "$current"
cargo clippy --workspace --all-targets -- -D warnings

# The original Python client (isek 0.2.1 from PyPI), unchanged, against our center.
current="scripts/python-compat.sh"
step "$current"
ISEK_PROFILE=debug bash scripts/python-compat.sh || {
    status=$?
    [ "$status" -eq 3 ] || exit "$status"
}

if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doc tests; run them first so nextest's summary of every
    # test is the closing line.
    current="cargo test --workspace --doc"
    step "$current"
    cargo test --workspace --doc
    current="cargo nextest run --workspace"
    step "$current"
    cargo nextest run --workspace --no-fail-fast
else
    current="cargo test --workspace"
    step "$current"
    cargo test --workspace --no-fail-fast
fi

current=""
step "OK: format, clippy and all tests passed"
