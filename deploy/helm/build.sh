#!/usr/bin/env bash
# Build the helm CLI from the Go module proxy at the version pinned in go.mod,
# into a cache directory outside the checkout (same cache root as the control
# plane: deploy/controlplane/build.sh).
#
#   deploy/helm/build.sh            build (no-op when already built)
#   deploy/helm/build.sh --force    rebuild even if the binary exists
#   deploy/helm/build.sh --bin      print the path of the helm binary and exit
#
# Output: ${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/helm/<version>/bin/helm
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

MAKE_TARGET=helm
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"

PKG=helm.sh/helm/v3/cmd/helm
cache_root="${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/helm"

# The pinned version is whatever go.mod selects: one source of truth.
# Read from go.mod directly (no network, no module download needed).
helm_version() { awk '$1 == "helm.sh/helm/v3" { print $2; exit } $2 == "helm.sh/helm/v3" { print $3; exit }' go.mod; }

build() {
    local v
    v="$(helm_version)"
    local bindir="$cache_root/${v#v}/bin"
    local stamp="helm=$v go=$("$GO" env GOVERSION)"
    if [ "${FORCE:-0}" != 1 ] && [ -f "$bindir/VERSIONS" ] \
        && [ "$(cat "$bindir/VERSIONS")" = "$stamp" ] && [ -x "$bindir/helm" ]; then
        echo "helm up to date in $bindir ($stamp)"
        return 0
    fi
    mkdir -p "$cache_root/${v#v}"
    local tmp
    tmp="$(mktemp -d "$cache_root/${v#v}/.build.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    echo "building helm $v into $bindir (first time: a few minutes)"
    local start=$SECONDS
    # helm prints its version from these (checked in helm.sh/helm/v3/internal/version).
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$v"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/helm" "$PKG"
    echo "$stamp" >"$tmp/VERSIONS"
    rm -rf "$bindir"
    mv "$tmp" "$bindir"
    trap - EXIT
    echo "built in $((SECONDS - start))s: $bindir/helm"
}

case "${1:-}" in
    --force) FORCE=1 build ;;
    --bin) v="$(helm_version)"; echo "$cache_root/${v#v}/bin/helm" ;;
    "") build ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
