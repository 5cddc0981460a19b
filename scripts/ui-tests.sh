#!/usr/bin/env bash
# Browser tests of the center's dashboard (scripts/test.sh runs them after the Rust
# tests): Debian's chromium, driven by playwright-core from the npm registry, against
# the already-built debug `isek center --in-memory` on free loopback ports
# (tests/ui/*.test.mjs, node's test runner).
#
# Installs what is missing, checked by file: chromium, node and npm from Debian
# (scripts/packages.sh), playwright-core at the version of tests/ui/package-lock.json
# into tests/ui/node_modules (git-ignored). Exit 3 when something could not be checked
# (the npm registry or the Debian archive out of reach, a test that skipped itself),
# so scripts/test.sh can tell "could not check" from "failed" (and fail under CI=true).
#
# Artifacts: screenshots in ${CARGO_TARGET_DIR:-target}/ui-tests/ (dashboard-10k.png).
# ISEK_BIN overrides the binary under test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
if ! require_files /usr/bin/chromium:chromium /usr/bin/node:nodejs /usr/bin/npm:npm; then
    echo "ui-tests: SKIPPED: the browser or node could not be installed" >&2
    exit 3
fi

if [ ! -e tests/ui/node_modules/playwright-core/package.json ]; then
    printf '\n==> installing playwright-core (tests/ui/package-lock.json)\n'
    if ! npm ci --prefix tests/ui --no-audit --no-fund --ignore-scripts; then
        echo "ui-tests: SKIPPED: could not install playwright-core from the npm registry" >&2
        exit 3
    fi
fi

target=${CARGO_TARGET_DIR:-target}
if [ -z "${ISEK_BIN:-}" ]; then
    # A no-op after `cargo nextest run --workspace`, which built it.
    cargo build -p isek-cli
    ISEK_BIN=$(cd "$target/debug" && pwd)/isek
fi
artifacts="$target/ui-tests"
mkdir -p "$artifacts"
ISEK_UI_ARTIFACTS=$(cd "$artifacts" && pwd)
export ISEK_BIN ISEK_UI_ARTIFACTS

cd tests/ui
report="$ISEK_UI_ARTIFACTS/report.tap"
status=0
node --test --test-concurrency=1 ./*.test.mjs | tee "$report" || status=$?
[ "$status" -eq 0 ] || exit "$status"
# A browser test that skipped itself did not check anything: a skip (exit 3) here,
# and scripts/test.sh fails on it under CI=true.
skipped=$(sed -n 's/^# \(skipped\|todo\) \([0-9][0-9]*\)$/\2/p' "$report" | awk '{ n += $1 } END { print n + 0 }')
if [ "$skipped" -gt 0 ]; then
    echo "ui-tests: SKIPPED: $skipped browser test(s) did not run" >&2
    exit 3
fi
