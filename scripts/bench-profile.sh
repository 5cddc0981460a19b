#!/usr/bin/env bash
# Profiles `isek center` built with the `profiling` profile (release code plus debug
# info, see Cargo.toml; the shipped release profile has none) under one isek-bench
# load with perf, and prints the hottest symbols. For finding where the center spends
# its CPU.
#
# Usage: scripts/bench-profile.sh SCENARIO [SECONDS] [CONNECTIONS]
#   SCENARIO: renew | register | list   (renew and list run against 10,000 nodes)
# Needs: perf (linux-perf); builds `--profile profiling` of isek-cli and isek-bench
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
scenario=${1:?usage: scripts/bench-profile.sh renew|register|list [SECONDS] [CONNECTIONS]}
seconds=${2:-6}
nodes=10000
case "$scenario" in
  register) connections=${3:-256}; nodes=1000000000 ;;
  list) connections=${3:-1} ;;
  renew) connections=${3:-64} ;;
  *) echo "unknown scenario $scenario (renew, register, list)" >&2; exit 2 ;;
esac
bench="$target"/profiling/isek-bench
isek="$target"/profiling/isek
cargo build --profile profiling -p isek-cli -p isek-bench

work=$(mktemp -d /tmp/isek-profile.XXXXXX)
center_pid=""
cleanup() {
  if [[ -n $center_pid ]]; then kill "$center_pid" 2>/dev/null || true; wait "$center_pid" 2>/dev/null || true; fi
  rm -rf "$work/data"
}
trap cleanup EXIT

"$isek" center --listen 127.0.0.1:0 --data-dir "$work/data" --lease-ttl 86400 >"$work/center.out" 2>"$work/center.err" &
center_pid=$!
url=""
for _ in $(seq 100); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/center.out" | head -1 || true)
  [[ -n $url ]] && break
  sleep 0.1
done
[[ -n $url ]] || { echo "center did not start:"; cat "$work/center.err"; exit 1; }

if [[ $scenario != register ]]; then
  "$bench" load --url "$url" --scenario register -n 10000 --nodes 10000 -c 128 >/dev/null
fi
perf record -F 1000 --call-graph "${PERF_CALL_GRAPH:-fp}" -p "$center_pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null &
perf_pid=$!
"$bench" load --url "$url" --scenario "$scenario" -c "$connections" -d "$seconds" --nodes "$nodes"
wait "$perf_pid" || true
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//; s/ +$//' | head -40
echo "perf data: $work/perf.data (perf report -i $work/perf.data)"
