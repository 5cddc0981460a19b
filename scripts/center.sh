#!/usr/bin/env bash
# Runs an Isek Center on its embedded on-disk store, building it first:
#   bash scripts/center.sh                    # = isek center --data-dir ./isek-data
#   bash scripts/center.sh --listen 0.0.0.0:8088 --data-dir /var/lib/isek
# Needs only the Rust toolchain: protoc, which the etcd client's build uses, comes from
# a crate (tools/protoc, wired in by .cargo/config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -eq 0 ] && set -- --data-dir ./isek-data
exec cargo run --release -p isek-cli -- center "$@"
