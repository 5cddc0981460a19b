#!/usr/bin/env bash
# Runs a command where no system protoc and no system protobuf include files can be
# seen, so a build that still needs them fails here, on every machine, instead of only
# on a fresh one. This is the guard of scripts/test.sh (hence CI): a developer or CI
# machine on which someone once installed protobuf-compiler or libprotobuf-dev by hand
# cannot hide a build that depends on them again.
#
#   bash scripts/sealed.sh cargo build -p isek
#
# In a private mount namespace (unshare, needs root or user namespaces), every protoc
# outside this repository is covered by /dev/null and every google/protobuf include
# directory by an empty tmpfs; PROTOC and PROTOC_INCLUDE are unset, so the build uses
# the vendored protoc of tools/protoc (.cargo/config.toml). Where no namespace can be
# made, it says so and runs the command unsealed, except under CI=true, where it fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ "${ISEK_SEALED:-}" = 1 ]; then
    # Inside the namespace: cover what the build must not use, then run the command.
    covered=()
    for dir in /usr/bin /usr/local/bin /bin /usr/sbin $(printf '%s' "${PATH:-}" | tr ':' ' '); do
        file=$dir/protoc
        [ -e "$file" ] || continue
        real=$(readlink -f "$file")
        case "$real" in "$repo"/*) continue ;; esac
        case " ${covered[*]} " in *" $real "*) continue ;; esac
        mount --bind /dev/null "$real"
        covered+=("$real")
    done
    for dir in /usr/include/google/protobuf /usr/local/include/google/protobuf; do
        [ -d "$dir" ] || continue
        mount -t tmpfs -o size=1m,mode=0555 isek-sealed "$dir"
        covered+=("$dir")
    done
    [ "${#covered[@]}" -eq 0 ] || echo "sealed: covered ${covered[*]}" >&2
    unset PROTOC PROTOC_INCLUDE
    exec "$@"
fi

if [ "$(id -u)" -eq 0 ] && unshare --mount --propagation private true 2>/dev/null; then
    exec env ISEK_SEALED=1 unshare --mount --propagation private "$0" "$@"
elif unshare --user --map-root-user --mount --propagation private true 2>/dev/null; then
    exec env ISEK_SEALED=1 unshare --user --map-root-user --mount --propagation private "$0" "$@"
fi
if [ "${CI:-}" = true ]; then
    echo "sealed: cannot make a mount namespace (unshare), so system protoc cannot be hidden; CI needs one" >&2
    exit 1
fi
echo "sealed: no mount namespace here (unshare refused): running unsealed" >&2
export ISEK_SEALED=unavailable
exec "$@"
