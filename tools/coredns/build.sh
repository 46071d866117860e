#!/usr/bin/env bash
# Build the cluster DNS (CoreDNS with the plugins imported by main.go) from the
# Go module proxy at the version pinned in go.mod, into a cache directory
# outside the checkout (same cache root as tools/controlplane and tools/helm).
#
#   tools/coredns/build.sh            build (no-op when already built)
#   tools/coredns/build.sh --force    rebuild even if the binary exists
#   tools/coredns/build.sh --bin      print the path of the coredns binary and exit
#
# Output: ${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/coredns/<version>/bin/coredns
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

MAKE_TARGET=cluster
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"

cache_root="${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/coredns"

coredns_version() { go_module_version github.com/coredns/coredns; }

compile() { "$GO" build -trimpath -ldflags "-s -w" -o "$1/coredns" .; }

build() {
    local v
    v="$(coredns_version)"
    # main.go chooses the plugins, so its hash is part of the stamp: editing the
    # plugin list rebuilds, as does another Go or a go.sum change.
    local src
    src="$(cat main.go go.mod go.sum | sha256sum | cut -c1-16)"
    cached_build "$cache_root/${v#v}/bin" "coredns=$v src=$src go=$("$GO" env GOVERSION)" compile coredns
}

case "${1:-}" in
    --force) FORCE=1 build ;;
    --bin) v="$(coredns_version)"; echo "$cache_root/${v#v}/bin/coredns" ;;
    "") build ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
