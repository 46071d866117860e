#!/usr/bin/env bash
# Build the Kubernetes binaries (kube-apiserver, kubectl, and for the real node of `make cluster`
# kubelet, kube-scheduler, kube-controller-manager, kube-proxy) and etcd from the Go module proxy
# at the versions pinned in go.mod, into a cache directory outside the checkout. One `go build`
# for all of them: they share most packages, so together they build in little more than kubelet
# alone.
#
#   tools/controlplane/build.sh            build (no-op when already built)
#   tools/controlplane/build.sh --force    rebuild even if the binaries exist
#   tools/controlplane/build.sh --bindir   print the binary directory and exit
#   tools/controlplane/build.sh --regen [K8S_VERSION]
#                                           rewrite go.mod/go.sum for a new
#                                           Kubernetes release (needs network)
#
# Output: ${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/controlplane/<k8s>/bin/
# pgjobs.devenv.controlplane.find_binaries() looks there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

MAKE_TARGET=controlplane
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"

K8S_COMMANDS=(kube-apiserver kubectl kubelet kube-scheduler kube-controller-manager kube-proxy)
K8S_PKGS=("${K8S_COMMANDS[@]/#/k8s.io/kubernetes/cmd/}")
ETCD_PKG=go.etcd.io/etcd/server/v3

cache_root="${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/controlplane"

# The pinned versions are whatever go.mod selects: one source of truth.
module_version() { GOFLAGS=-mod=mod "$GO" list -m -f '{{.Version}}' "$1"; }

regen() {
    # Rewrites go.mod from scratch. k8s.io/kubernetes requires its staging
    # modules at v0.0.0 (it replaces them with ./staging in its own repo), so a
    # consumer must replace each one with the published v0.X.Y; the set changes
    # between releases, hence derived from the published go.mod, not typed.
    local k="${1:-$(module_version k8s.io/kubernetes | sed 's/^v//')}"
    local staging="v0.${k#1.}"
    rm -f go.mod go.sum
    "$GO" mod init pgjobs.dev/controlplane >/dev/null 2>&1
    local upstream
    upstream="$(GOFLAGS=-mod=mod "$GO" mod download -json "k8s.io/kubernetes@v$k" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    # The minimum Go that Kubernetes itself declares, not whatever Go ran
    # `go mod init`: older-but-sufficient toolchains keep working.
    "$GO" mod edit "-go=$(awk '$1 == "go" { print $2; exit }' "$upstream")"
    local m
    for m in $(awk '$2 == "v0.0.0" { print $1 }' "$upstream" | sort -u); do
        "$GO" mod edit "-replace=$m=$m@$staging"
    done
    GOFLAGS=-mod=mod "$GO" get "k8s.io/kubernetes@v$k"
    # etcd: keep the version k8s.io/kubernetes itself selects (it requires
    # the etcd server module for its test framework), so the pair matches.
    # Every `get -tool` names its version: a bare package path means @upgrade
    # and would silently pull the newest Kubernetes/etcd instead.
    local etcd p
    etcd="$(module_version go.etcd.io/etcd/server/v3)"
    for p in "${K8S_PKGS[@]}"; do
        GOFLAGS=-mod=mod "$GO" get -tool "$p@v$k"
    done
    GOFLAGS=-mod=mod "$GO" get -tool "$ETCD_PKG@$etcd"
    GOFLAGS=-mod=mod "$GO" mod tidy
    echo "go.mod regenerated for Kubernetes v$k, etcd $(module_version go.etcd.io/etcd/server/v3)"
}

k8s_ldflags() {
    # Without these /version says v0.0.0-master+$Format:%H$. Variable names
    # checked in the pinned k8s.io/component-base/version/base.go and
    # k8s.io/client-go/pkg/version/base.go (kubectl prints the latter's).
    local v="$1" major minor
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    # The release's publication time rather than now: reproducible builds.
    local date f=""
    date="$(GOFLAGS=-mod=mod "$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
    local pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    echo "-s -w$f"
}

all_built() {
    local c
    for c in "${K8S_COMMANDS[@]}" etcd; do [ -x "$1/$c" ] || return 1; done
}

build() {
    local k8s etcd
    k8s="$(module_version k8s.io/kubernetes)"
    etcd="$(module_version go.etcd.io/etcd/server/v3)"
    local bindir="$cache_root/${k8s#v}/bin"
    local stamp="kubernetes=$k8s etcd=$etcd go=$("$GO" env GOVERSION)"
    if [ "${FORCE:-0}" != 1 ] && [ -f "$bindir/VERSIONS" ] \
        && [ "$(cat "$bindir/VERSIONS")" = "$stamp" ] \
        && all_built "$bindir"; then
        echo "control plane binaries up to date in $bindir ($stamp)"
        return 0
    fi
    # Build into a scratch dir and rename, so an interrupted build never
    # leaves a half-filled bin dir that looks complete.
    mkdir -p "$cache_root/${k8s#v}"
    local tmp
    tmp="$(mktemp -d "$cache_root/${k8s#v}/.build.XXXXXX")"
    chmod 755 "$tmp"  # mktemp makes it private; the binaries are not secret
    trap 'rm -rf "$tmp"' EXIT
    echo "building ${K8S_COMMANDS[*]} $k8s and etcd $etcd into $bindir (first time: ~10 minutes on 2 cores)"
    local start=$SECONDS
    "$GO" build -trimpath -ldflags "$(k8s_ldflags "$k8s")" -o "$tmp/" "${K8S_PKGS[@]}"
    "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/etcd" "$ETCD_PKG"
    echo "$stamp" >"$tmp/VERSIONS"
    rm -rf "$bindir"
    mv "$tmp" "$bindir"
    trap - EXIT
    echo "built in $((SECONDS - start))s: $(ls "$bindir" | tr '\n' ' ')"
}

case "${1:-}" in
    --regen) shift; regen "$@" ;;
    --force) FORCE=1 build ;;
    --bindir) echo "$cache_root/$(module_version k8s.io/kubernetes | sed 's/^v//')/bin" ;;
    "") build ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
