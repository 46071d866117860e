#!/usr/bin/env bash
# Build the helm CLI from the Go module proxy at the version pinned in go.mod,
# into a cache directory outside the checkout (same cache root as the control
# plane: tools/controlplane/build.sh).
#
#   tools/helm/build.sh            build (no-op when already built)
#   tools/helm/build.sh --force    rebuild even if the binary exists
#   tools/helm/build.sh --bin      print the path of the helm binary and exit
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

helm_version() { go_module_version helm.sh/helm/v3; }
# The Kubernetes minor version `helm template` assumes without a cluster (its default
# .Capabilities.KubeVersion): the client-go helm is built with, as helm's own release build sets.
# Without it helm assumes v1.20, older than the chart's kubeVersion floor.
k8s_minor() { go_module_version k8s.io/client-go | sed -E 's/^v0\.([0-9]+)\..*/\1/'; }

compile() {
    local v
    v="$(helm_version)"
    # helm prints its version from these (checked in helm.sh/helm/v3/internal/version).
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$v"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(k8s_minor)"
    "$GO" build -trimpath -ldflags "$ldflags" -o "$1/helm" "$PKG"
}

build() {
    local v
    v="$(helm_version)"
    cached_build "$cache_root/${v#v}/bin" "helm=$v k8s=1.$(k8s_minor) go=$("$GO" env GOVERSION)" compile helm
}

case "${1:-}" in
    --force) FORCE=1 build ;;
    --bin) v="$(helm_version)"; echo "$cache_root/${v#v}/bin/helm" ;;
    "") build ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
