#!/usr/bin/env bash
# Runs an Isek Center on its embedded on-disk store, building it first:
#   bash scripts/center.sh                    # = isek center --data-dir ./isek-data
#   bash scripts/center.sh --listen 0.0.0.0:8088 --data-dir /var/lib/isek
# Installs protoc (needed to build the etcd client) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
require_commands protoc:protobuf-compiler
[ "$#" -eq 0 ] && set -- --data-dir ./isek-data
exec cargo run --release -p isek-cli -- center "$@"
