#!/usr/bin/env bash
# Build Prometheus and promtool from the Go module proxy at the version pinned in
# go.mod (github.com/prometheus/prometheus v0.3MM.P is Prometheus 3.MM.P), into a
# cache directory outside the checkout (same cache root as tools/helm and
# tools/coredns). Used by tests/cluster/test_dashboard.py (the dashboard's queries
# against a real Prometheus) and tests/unit/test_prometheus_rules.py (promtool).
#
#   tools/prometheus/build.sh             build (no-op when already built)
#   tools/prometheus/build.sh --force     rebuild even if the binaries exist
#   tools/prometheus/build.sh --bin-dir   print the directory of prometheus and promtool
#
# Output: ${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/prometheus/<version>/bin/{prometheus,promtool}
#
# The module carries no web UI assets (they are built with npm and embedded only
# with the builtinassets tag), so this Prometheus serves its HTTP API but no UI
# pages. Service discovery is limited to kubernetes (plus the built-in static,
# file and http ones) with remove_all_sd,enable_kubernetes_sd: a smaller, faster
# build of what pgjobs needs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

MAKE_TARGET=prometheus
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"

MODULE=github.com/prometheus/prometheus
TAGS=netgo,remove_all_sd,enable_kubernetes_sd
cache_root="${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/prometheus"

module_version() { go_module_version "$MODULE"; }

# v0.316.0 -> 3.16.0 (Prometheus tags its Go module v0.<major*100+minor>.<patch>).
prometheus_version() {
    local v="${1#v}"
    local mm="${v#0.}"
    mm="${mm%%.*}"
    echo "$((mm / 100)).$((mm % 100)).${v##*.}"
}

bin_dir() { echo "$cache_root/$(prometheus_version "$(module_version)")/bin"; }

compile() {
    local mv v
    mv="$(module_version)"
    v="$(prometheus_version "$mv")"
    # Both binaries print their version from these (prometheus --version).
    local ldflags="-s -w -X github.com/prometheus/common/version.Version=$v"
    ldflags+=" -X github.com/prometheus/common/version.Revision=$mv"
    ldflags+=" -X github.com/prometheus/common/version.Branch=gomodule"
    "$GO" build -trimpath -tags "$TAGS" -ldflags "$ldflags" -o "$1/" \
        "$MODULE/cmd/prometheus" "$MODULE/cmd/promtool"
}

build() {
    cached_build "$(bin_dir)" "prometheus=$(module_version) tags=$TAGS go=$("$GO" env GOVERSION)" \
        compile prometheus promtool
}

case "${1:-}" in
    --force) FORCE=1 build ;;
    --bin-dir) bin_dir ;;
    "") build ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
