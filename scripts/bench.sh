#!/usr/bin/env bash
# Runs the benchmark suite of issue 2 end to end and prints a summary table:
# builds release binaries, starts a bare axum baseline and `isek center` processes on
# free 127.0.0.1 ports, drives renew / list / register loads with `isek-bench`
# (and with wrk when installed), samples RSS, and kills everything it started.
#
# Usage: scripts/bench.sh [isek-bench suite options...]
#   e.g. scripts/bench.sh --duration 5 --rss-nodes 100000
#        BENCH_NICE=-10 scripts/bench.sh   (root: run at higher priority than other jobs)
#        scripts/bench.sh --help-suite     (all options)
#        scripts/bench.sh --scale [--nodes 1000000 ...]   (issue 14: a million nodes;
#          about 10 minutes; --scale --help for its options; develop with --nodes 20000)
# Takes about 3-4 minutes with the defaults (most of it registering 1,000,000 nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

if [[ "${1:-}" == "--help-suite" ]]; then
  exec cargo run --release -q -p isek-bench -- suite --help
fi

cargo build --release -p isek-cli -p isek-bench

if [[ "${1:-}" == "--scale" ]]; then
  shift
  echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >&2
  nice_cmd=()
  if [[ -n "${BENCH_NICE:-}" ]]; then
    nice_cmd=(nice -n "$BENCH_NICE")
  fi
  exec "${nice_cmd[@]}" "$target"/release/isek-bench scale --isek "$target"/release/isek "$@"
fi

args=(--wrk-script bench/renew.lua)
# Measure `isek center` when the CLI has it; otherwise isek-bench's own `center`
# subcommand, which calls the same isek_center::run.
if "$target"/release/isek center --help >/dev/null 2>&1; then
  args+=(--isek "$target"/release/isek)
else
  echo "$target/release/isek has no 'center' subcommand: using 'isek-bench center'" >&2
fi
if command -v wrk >/dev/null 2>&1; then
  args+=(--wrk "$(command -v wrk)")
else
  echo "wrk not installed (apt-get install wrk): skipping the wrk cross-check" >&2
fi

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >&2
# On a machine shared with builds, BENCH_NICE=-10 (needs root) gives the servers and the
# load generator priority over other processes, so the figures are closer to a quiet
# machine's. The suite kills its server processes itself (also on error); the data
# directory is a temporary directory on disk unless --work-dir is given.
nice_cmd=()
if [[ -n "${BENCH_NICE:-}" ]]; then
  nice_cmd=(nice -n "$BENCH_NICE")
fi
exec "${nice_cmd[@]}" "$target"/release/isek-bench suite "${args[@]}" "$@"
