#!/usr/bin/env bash
# Proves the set-up from nothing: runs the README's test command (scripts/test.sh, as CI
# does) in an empty Debian bookworm root that has only what a new machine of this
# project's kind has, so a package or file the scripts forget to install fails here
# even when this machine has it. Not run by CI (it takes 10+ minutes); run it after any
# change to scripts/ or to what the build needs.
#
#   bash scripts/fresh-root.sh                              # the whole check, from a clone of HEAD
#   FRESH_ROOT_CHECK=center bash scripts/fresh-root.sh      # only: scripts/center.sh serves and answers
#   FRESH_ROOT_CHECK=packages bash scripts/fresh-root.sh    # only: packages.sh installs every file
#
# The root: `debootstrap --variant=minbase bookworm` plus what the machine kind ships
# (gcc/make, git, python3, CA certificates), cached as a tarball in $FRESH_ROOT_CACHE
# (default /var/cache/isek-fresh-root) and unpacked anew for every run. From this
# machine it borrows, read-only, only the kind's own tools: the Rust toolchain (rustup,
# cargo, rustc, clippy, rustfmt), cargo-nextest and Node.js with npm. Crates, Debian and
# PyPI packages are fetched inside the root from their registries, as on a new machine.
# Needs root (debootstrap, chroot, mounts in a private mount namespace).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
source scripts/packages.sh

[ "$(id -u)" -eq 0 ] || { echo "fresh-root: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
require_files /usr/sbin/debootstrap:debootstrap

check=${FRESH_ROOT_CHECK:-all}
cache=${FRESH_ROOT_CACHE:-/var/cache/isek-fresh-root}
base=$cache/bookworm-minbase.tar
mkdir -p "$cache"
if [ ! -s "$base" ]; then
    echo "fresh-root: debootstrap bookworm (minbase) into the cache, once" >&2
    stage=$(mktemp -d "$cache/stage.XXXXXX")
    debootstrap --variant=minbase \
        --include=ca-certificates,git,gcc,g++,make,libc6-dev,python3,procps,iproute2,util-linux,mount \
        bookworm "$stage" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 ||
        { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$stage"; exit 1; }
    tar -C "$stage" -cf "$base.tmp" . && mv "$base.tmp" "$base"
    rm -rf "$stage"
fi

root=$(mktemp -d /var/tmp/isek-fresh-root.XXXXXX)
trap 'rm -rf "$root"' EXIT
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A new machine has a hosts file naming localhost (the TLS tests use that name).
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
[ -e /etc/apt/sources.list.d/debian.sources ] &&
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
# The machine's own trust and registry settings (its CA certificates, which the
# registries' TLS is checked against, and the pip/npm configuration), as every new
# machine of this kind has them.
cp -a /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
[ -e /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
[ -e "$HOME/.npmrc" ] && cp "$HOME/.npmrc" "$root/root/.npmrc"
machine_env=()
for name in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE REQUESTS_CA_BUNDLE PIP_CERT \
    NODE_EXTRA_CA_CERTS GIT_SSL_CAINFO PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK; do
    [ -n "${!name:-}" ] && machine_env+=("$name=${!name}")
done

# A clone of HEAD, as CI makes one (committed work only).
git clone --quiet --no-local "$repo" "$root/src"
git -C "$root/src" log --oneline -1 >&2

# What a machine of this kind has besides Debian's packages, mounted read-only below.
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
mkdir -p "$root/opt/rustup" "$root/opt/cargo-bin" "$root/root/.cargo"
nextest=$(command -v cargo-nextest || true)
node=$(command -v node || true)
npm_dir=/usr/lib/node_modules/npm

case "$check" in
    packages) command='source scripts/packages.sh && require_files "${ISEK_TEST_FILES[@]}" && for p in "${ISEK_TEST_FILES[@]}"; do test -e "${p%%:*}" || { echo "missing ${p%%:*}"; exit 1; }; done && echo "fresh-root: every file of ISEK_TEST_FILES present"' ;;
    center) command='bash scripts/center.sh --in-memory --listen 127.0.0.1:0 >/tmp/center.out 2>/tmp/center.err & pid=$!; for i in $(seq 1800); do grep -q "listening on" /tmp/center.out 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 1; done; cat /tmp/center.out; url=$(sed -n "s/.*listening on //p" /tmp/center.out); [ -n "$url" ] || { tail -20 /tmp/center.err; exit 1; }; python3 -c "import json,sys,urllib.request as u; r=u.urlopen(u.Request(sys.argv[1]+\"/isek_center/register\",data=json.dumps({\"node_id\":\"n1\",\"host\":\"h\",\"port\":1,\"metadata\":{}}).encode(),headers={\"Content-Type\":\"application/json\"})); print(r.status, r.read().decode())" "$url"; kill $pid; wait $pid || true' ;;
    all) command='bash scripts/test.sh' ;;
    *) echo "fresh-root: FRESH_ROOT_CHECK is all, center or packages, not $check" >&2; exit 2 ;;
esac

start=$(date +%s)
status=0
unshare --mount --propagation private bash -euo pipefail -c '
    root=$1; shift
    # The root must be a mount point of its own, as / is on a machine: scripts/sealed.sh
    # makes a private mount namespace there (unshare --propagation private).
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    mount -t tmpfs tmpfs "$root/tmp"
    mount --bind "$1" "$root/opt/rustup" && mount -o remount,bind,ro "$root/opt/rustup"
    mount --bind "$2" "$root/opt/cargo-bin" && mount -o remount,bind,ro "$root/opt/cargo-bin"
    if [ -n "$3" ]; then touch "$root/usr/local/bin/cargo-nextest"; mount --bind -o ro "$3" "$root/usr/local/bin/cargo-nextest"; fi
    if [ -n "$4" ]; then
        touch "$root/usr/bin/node"; mount --bind -o ro "$4" "$root/usr/bin/node"
        mkdir -p "$root/usr/lib/node_modules/npm"; mount --bind -o ro "$5" "$root/usr/lib/node_modules/npm"
        ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
        ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
    fi
    shift 5
    IFS=" " read -r -a machine_env <<<"$1"
    shift
    exec chroot "$root" /usr/bin/env -i "${machine_env[@]}" HOME=/root TERM=dumb CI=true LANG=C.UTF-8 \
        RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo \
        PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c "cd /src && $*"
'  fresh-root "$root" "$rustup_home" "$cargo_bin" "$nextest" "$node" "$npm_dir" "${machine_env[*]}" "$command" || status=$?
echo "fresh-root: check '$check' exited $status after $(($(date +%s) - start)) s" >&2
exit "$status"
