#!/usr/bin/env bash
# The load of unchanged ISEK 0.2.1 nodes (issue 14): every node renews and downloads
# the whole `available_nodes` listing every 5 s, so 10,000 nodes are 2,000 renewals/s
# plus 2,000 listings/s. Runs both loads at once, open loop (latency counted from each
# request's due time), against a release `isek center` holding NODES nodes, first with
# `Accept-Encoding: gzip, deflate` (what Python's requests sends), then without, and
# prints renew p99, list p99, body bytes/s and the center's CPU.
#
# Usage: scripts/bench-pollers.sh [NODES (10000)] [SECONDS (10)] [CONNECTIONS (64)]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-10000}
seconds=${2:-10}
connections=${3:-64}
rate=$((nodes / 5))
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p isek-cli -p isek-bench
bench=$target/release/isek-bench
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A center on a free port (port 0), the address read from its "listening" line.
"$target"/release/isek center --data-dir "$work/data" --listen 127.0.0.1:0 --lease-ttl 86400 \
    >"$work/center.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$work/center.log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "the center did not start:" >&2; cat "$work/center.log" >&2; exit 1; }

# ISEK-like metadata (~400 B: name, bio, lore, knowledge, routine, url).
"$bench" load --url "$url" --scenario register -n "$nodes" --nodes "$nodes" \
    --metadata-bytes 400 -c 64 >/dev/null
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "$nodes nodes; $rate renew/s + $rate list/s for ${seconds}s over $connections connections"
for coding in gzip identity; do
    flag=()
    [ "$coding" = gzip ] && flag=(--gzip)
    before=$(cpu)
    "$bench" load --url "$url" --scenario renew --nodes "$nodes" --rate "$rate" \
        -d "$seconds" -c $((connections / 2)) >"$work/renew.txt" &
    renew=$!
    "$bench" load --url "$url" --scenario list "${flag[@]}" --rate "$rate" \
        -d "$seconds" -c $((connections / 2)) >"$work/list.txt"
    wait "$renew"
    after=$(cpu)
    list_mb=$(grep -oE '[0-9.]+ MB body' "$work/list.txt" | grep -oE '^[0-9.]+')
    printf '%-8s renew: %s\n' "$coding" "$(grep -oE 'ok=[0-9]+ +failed=[0-9]+|p99=[0-9.]+ms' "$work/renew.txt" | tr '\n' ' ')"
    printf '%-8s list:  %s  %.1f MB/s  center CPU %.0f%%\n' "$coding" \
        "$(grep -oE 'ok=[0-9]+ +failed=[0-9]+|p99=[0-9.]+ms' "$work/list.txt" | tr '\n' ' ')" \
        "$(echo "$list_mb / $seconds" | bc -l)" \
        "$(echo "($after - $before) * 100 / $ticks / $seconds" | bc -l)"
done
