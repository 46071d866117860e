# Sourced by the build scripts under tools/ (and deploy/image/build.sh): find Go (or say how to get it) and set the flags
# every pgjobs build uses. The caller sets MAKE_TARGET to the make target that reruns it.
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if ! [ -x "$GO" ] && ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: Go is not installed (looked for 'go' on PATH and /usr/local/go/bin/go)." >&2
    echo "          Install Go >= 1.26 from https://go.dev/dl/ and run 'make ${MAKE_TARGET}' again." >&2
    exit 1
fi
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

# go_module_version MODULE: the version that go.mod (in the current directory) pins for MODULE,
# read from the file: one source of truth, no network, no module download.
go_module_version() { awk -v m="$1" '$1 == m { print $2; exit } $2 == m { print $3; exit }' go.mod; }

# cached_build BINDIR STAMP COMPILE BINARY...: unless BINDIR already holds every BINARY built with
# STAMP (and FORCE is not 1), run `COMPILE DIR` to build them into a fresh directory, then put it
# in BINDIR's place: a build cut short leaves the cache as it was.
cached_build() {
    local bindir=$1 stamp=$2 compile=$3
    shift 3
    local binary ready=0
    if [ "${FORCE:-0}" != 1 ] && [ -f "$bindir/VERSIONS" ] && [ "$(cat "$bindir/VERSIONS")" = "$stamp" ]; then
        ready=1
        for binary in "$@"; do [ -x "$bindir/$binary" ] || ready=0; done
    fi
    if [ "$ready" = 1 ]; then
        echo "$* up to date in $bindir ($stamp)"
        return 0
    fi
    mkdir -p "$(dirname "$bindir")"
    local tmp
    tmp="$(mktemp -d "$(dirname "$bindir")/.build.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    echo "building $* into $bindir (first time: a few minutes)"
    local start=$SECONDS
    "$compile" "$tmp"
    echo "$stamp" >"$tmp/VERSIONS"
    rm -rf "$bindir"
    mv "$tmp" "$bindir"
    trap - EXIT
    echo "built in $((SECONDS - start))s: $bindir"
}
