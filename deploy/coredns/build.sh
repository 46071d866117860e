#!/usr/bin/env bash
# Build the cluster DNS (CoreDNS with the plugins imported by main.go) from the
# Go module proxy at the version pinned in go.mod, into a cache directory
# outside the checkout (same cache root as deploy/controlplane and deploy/helm).
#
#   deploy/coredns/build.sh            build (no-op when already built)
#   deploy/coredns/build.sh --force    rebuild even if the binary exists
#   deploy/coredns/build.sh --bin      print the path of the coredns binary and exit
#
# Output: ${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/coredns/<version>/bin/coredns
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

MAKE_TARGET=cluster
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"

cache_root="${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/coredns"

# The pinned version is whatever go.mod selects: one source of truth.
# Read from go.mod directly (no network, no module download needed).
coredns_version() {
    awk '$1 == "github.com/coredns/coredns" { print $2; exit }
         $2 == "github.com/coredns/coredns" { print $3; exit }' go.mod
}

build() {
    local v
    v="$(coredns_version)"
    local bindir="$cache_root/${v#v}/bin"
    # main.go chooses the plugins, so its hash is part of the stamp: editing the
    # plugin list rebuilds, as does another Go or a go.sum change.
    local src
    src="$(cat main.go go.mod go.sum | sha256sum | cut -c1-16)"
    local stamp="coredns=$v src=$src go=$("$GO" env GOVERSION)"
    if [ "${FORCE:-0}" != 1 ] && [ -f "$bindir/VERSIONS" ] \
        && [ "$(cat "$bindir/VERSIONS")" = "$stamp" ] && [ -x "$bindir/coredns" ]; then
        echo "coredns up to date in $bindir ($stamp)"
        return 0
    fi
    mkdir -p "$cache_root/${v#v}"
    local tmp
    tmp="$(mktemp -d "$cache_root/${v#v}/.build.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    echo "building coredns $v into $bindir (first time: a few minutes)"
    local start=$SECONDS
    "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/coredns" .
    echo "$stamp" >"$tmp/VERSIONS"
    rm -rf "$bindir"
    mv "$tmp" "$bindir"
    trap - EXIT
    echo "built in $((SECONDS - start))s: $bindir/coredns"
}

case "${1:-}" in
    --force) FORCE=1 build ;;
    --bin) v="$(coredns_version)"; echo "$cache_root/${v#v}/bin/coredns" ;;
    "") build ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
