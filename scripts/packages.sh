# Sourced by the other scripts: installs missing system packages with apt-get.
#
#   require_commands protoc:protobuf-compiler etcd:etcd-server
#
# Each argument is COMMAND:DEBIAN-PACKAGE; packages whose command is missing are
# installed together, after one `apt-get update` (none at all when nothing is missing).

require_commands() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    printf '\n==> installing %s\n' "${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}
