#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for a fixed time or a
# fixed number of executions, and prints executions, exec/s and findings per target.
# Not part of CI (CI must stay fast).
#
# Usage: scripts/fuzz.sh [TARGET...]        (default: every target)
#   FUZZ_SECONDS=S  time per target (default 30; ignored when only FUZZ_RUNS is set)
#   FUZZ_RUNS=N     executions per target (stops at whichever limit comes first)
#   FUZZ_NICE=N     niceness of build and run (default 10: the machine is shared)
#   FUZZ_ARGS=...   extra libFuzzer flags, e.g. "-max_len=8192"
# Installs cargo-fuzz when it is missing (`cargo install cargo-fuzz --locked`); builds
# with `-s none`, so it works on stable Rust (release build with debug assertions and
# overflow checks; no nightly, no RUSTC_BOOTSTRAP).
# The center targets are functions of isek_testkit::fuzzing; their seeds are replayed
# by a normal test (crates/isek-center/tests/fuzz_seeds.rs), which CI runs.
# Working corpora grow in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>),
# crashing inputs land in fuzz/artifacts/<target>; both are git-ignored.
# Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(center_request center_security canonical_json etcd_entry etcd_entry_mutation)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
nice_level=${FUZZ_NICE:-10}

limits=()
if [ -n "${FUZZ_RUNS:-}" ]; then
    limits+=("-runs=${FUZZ_RUNS}")
    [ -z "${FUZZ_SECONDS:-}" ] || limits+=("-max_total_time=${FUZZ_SECONDS}")
else
    limits+=("-max_total_time=${FUZZ_SECONDS:-30}")
fi
# A single input running 10 s is a hang; 2 GiB RSS is a leak.
flags=("${limits[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1)
# shellcheck disable=SC2206
[ -z "${FUZZ_ARGS:-}" ] || flags+=(${FUZZ_ARGS})

if ! command -v cargo-fuzz >/dev/null; then
    echo "== cargo-fuzz missing: cargo install cargo-fuzz --locked"
    nice -n "$nice_level" cargo install cargo-fuzz --locked
fi
echo "== building fuzz targets (cargo fuzz build -s none)"
nice -n "$nice_level" cargo fuzz build -s none

logs=$(mktemp -d)
summary=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    log="$logs/$target.log"
    echo "== $target: cargo fuzz run -s none $target fuzz/corpus/$target fuzz/seeds/$target -- ${flags[*]}"
    set +e
    nice -n "$nice_level" cargo fuzz run -s none "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${flags[@]}" >"$log" 2>&1
    status=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    after=$(find "fuzz/artifacts/$target" -type f | wc -l)
    findings=$((after - before))
    if [ "$status" -ne 0 ] && [ "$findings" -eq 0 ]; then findings=1; fi
    if [ "$findings" -ne 0 ]; then
        failed=1
        echo "!! $target: exit $status; last lines of $log:"
        grep -E "panicked at|Test unit written|ERROR|SUMMARY|thread '" "$log" | head -20 || true
        tail -5 "$log"
    fi
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    summary+=("$(printf '%-22s runs=%-12s exec/s=%-8s corpus=%-6s findings=%s' \
        "$target" "${runs:-?}" "${speed:-?}" "$corpus" "$findings")")
done

echo "== summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
exit "$failed"
