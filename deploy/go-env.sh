# Sourced by the build scripts under deploy/: find Go (or say how to get it) and set the flags
# every pgjobs build uses. The caller sets MAKE_TARGET to the make target that reruns it.
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if ! [ -x "$GO" ] && ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: Go is not installed (looked for 'go' on PATH and /usr/local/go/bin/go)." >&2
    echo "          Install Go >= 1.26 from https://go.dev/dl/ and run 'make ${MAKE_TARGET}' again." >&2
    exit 1
fi
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
