# Sourced by the other scripts: makes sure the files the build and the tests use are
# present, installing the Debian packages that provide the missing ones.
#
#   require_files /usr/bin/etcd:etcd-server /usr/bin/etcdctl:etcd-client
#
# Each argument is FILE:DEBIAN-PACKAGE. A file is checked, not a command name: a command
# on PATH can come without what it needs (protoc without its include files was how a
# fresh machine once failed). Missing packages are installed together after one
# `apt-get update`; when that is impossible (no root, no apt, no network) the script
# stops with one line naming the missing file, its package and the command to get it.
#
# protoc is not among them: the build takes protoc and its well-known types from the
# protoc-bin-vendored crate (tools/protoc, wired in by .cargo/config.toml).

# The files the whole check (scripts/test.sh) uses, as FILE:PACKAGE.
ISEK_TEST_FILES=(
    /usr/bin/etcd:etcd-server
)

require_files() {
    local missing_files=() missing_packages=() pair file package
    for pair in "$@"; do
        file=${pair%%:*}
        package=${pair#*:}
        if [ ! -e "$file" ]; then
            missing_files+=("$file")
            case " ${missing_packages[*]} " in
                *" $package "*) ;;
                *) missing_packages+=("$package") ;;
            esac
        fi
    done
    [ "${#missing_files[@]}" -eq 0 ] && return 0
    printf '\n==> installing %s (for %s)\n' "${missing_packages[*]}" "${missing_files[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            packages_missing "${missing_files[*]}" "${missing_packages[*]}" "not root and no sudo"
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        packages_missing "${missing_files[*]}" "${missing_packages[*]}" "no apt-get on this machine"
        return 1
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q ||
        ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q -o DPkg::Lock::Timeout=600 \
            --no-install-recommends "${missing_packages[@]}"; then
        packages_missing "${missing_files[*]}" "${missing_packages[*]}" "apt-get failed"
        return 1
    fi
    # The package may have moved the file: check again, by file.
    for file in "${missing_files[@]}"; do
        if [ ! -e "$file" ]; then
            packages_missing "$file" "${missing_packages[*]}" "installed, yet the file is absent"
            return 1
        fi
    done
    # Debian's etcd-server starts a system etcd on 2379; tests use their own ports.
    if [ -x /usr/bin/systemctl ] && "${sudo[@]}" systemctl is-active --quiet etcd 2>/dev/null; then
        "${sudo[@]}" systemctl stop etcd || true
    fi
}

# One line on stderr: what is missing, which package has it, how to get it.
packages_missing() {
    printf 'missing %s (Debian package %s): %s; install it with: apt-get install %s\n' \
        "$1" "$2" "$3" "$2" >&2
}

# A python3 that can make virtualenvs: Debian splits ensurepip out into python3-venv.
# Prints the interpreter's path.
require_python_venv() {
    local python
    python=$(command -v python3) || {
        packages_missing python3 python3 "no python3 on PATH"
        return 1
    }
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        local version
        version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        require_files "/usr/lib/python$version/ensurepip/__init__.py:python$version-venv" >&2 || return 1
    fi
    printf '%s\n' "$python"
}
