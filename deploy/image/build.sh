#!/usr/bin/env bash
# Build the project's container images with buildah, without Docker or a registry, as OCI
# archives for containerd (`ctr -n k8s.io images import FILE`, done by the local cluster):
#
#   localhost/pgjobs-base:bookworm  Debian bookworm minbase + python3, python3-venv, ca-certificates
#                                   (mmdebstrap, ~2 min; rebuilt only when its package list changes)
#   localhost/pgjobs:dev            deploy/Dockerfile on that base (rebuilt when pyproject.toml,
#                                   README.md, pgjobs/** or deploy/Dockerfile change);
#                                   PGJOBS_IMAGE_TAG=dev2 also tags and archives localhost/pgjobs:dev2
#   localhost/pgjobs-postgres:15    Debian's postgresql-15, user postgres = uid/gid 999, entrypoint
#                                   deploy/image/postgres/entrypoint.sh (the chart's dev PostgreSQL)
#   localhost/pgjobs-pause:1        the pod sandbox image: deploy/image/pause (static Go), FROM scratch
#   localhost/acme-worker:dev       deploy/examples/custom-worker on localhost/pgjobs:dev: the example
#                                   package's wheel (built here with pip) installed with no network
#                                   (rebuilt when the example or the pgjobs image changes)
#
#   deploy/image/build.sh             build what is missing or stale (seconds when nothing changed)
#   deploy/image/build.sh --force     rebuild every image (e.g. for Debian security updates)
#   deploy/image/build.sh --archives  print "<image reference> <absolute archive path>", one line
#                                     per image, and nothing else; builds nothing
#
# Output: ${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/images/<name>_<tag>.oci.tar,
# each with a .stamp (the hash of its inputs) next to it, and build logs in images/logs/.
# buildah's storage lives in .../buildah/ (CONTAINERS_STORAGE_CONF=.../buildah/storage.conf
# buildah images), nothing in /var/lib/containers. Needs root, buildah and mmdebstrap (installed
# with apt-get when missing), Go for the pause binary (tools/go-env.sh) and network access to
# the Debian mirror and PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="$(realpath -m "${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}")"
images="$cache/images"
logs="$images/logs"
store="$cache/buildah"

SUITE=bookworm
BASE_REF=localhost/pgjobs-base:$SUITE
APP_REPO=localhost/pgjobs
APP_TAG=dev
PG_REF=localhost/pgjobs-postgres:15
PAUSE_REF=localhost/pgjobs-pause:1
EXAMPLE_REF=localhost/acme-worker:dev
EXAMPLE=deploy/examples/custom-worker
extra_tag="${PGJOBS_IMAGE_TAG:-}"
if [ -n "$extra_tag" ] && ! [[ "$extra_tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    echo "build.sh: PGJOBS_IMAGE_TAG='$extra_tag' is not a valid image tag" >&2
    exit 2
fi

# Both Debian images: minbase, no manuals, info pages, translations or docs (copyrights stay).
SLIM=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright')
# Container runtimes bind-mount their own /etc/resolv.conf, /etc/hostname and /etc/hosts.
# mmdebstrap leaves the host's first two behind: empty them, and give hosts netbase's
# localhost lines; with the three present, buildah's RUN steps add no copies to later layers.
# The mmdebstrap hooks are single-quoted on purpose: mmdebstrap runs each with sh, the new
# root as $1.
# shellcheck disable=SC2016
RUNTIME_FILES='rm -f "$1/etc/resolv.conf" "$1/etc/hostname" && : >"$1/etc/resolv.conf" && : >"$1/etc/hostname" && printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"'
# shellcheck disable=SC2054 # --include takes a comma-separated list
BASE_DEBOOTSTRAP=(--variant=minbase --include=python3,python3-venv,ca-certificates "${SLIM[@]}"
                  --customize-hook="$RUNTIME_FILES")
BASE_CONFIG=(--env LANG=C.UTF-8 --cmd '["python3"]'
             --label org.opencontainers.image.title=pgjobs-base
             --label "org.opencontainers.image.description=Debian $SUITE minbase with python3 and python3-venv")

# postgres must be 999:999 (the chart's runAsUser/fsGroup): create it before the package does
# (postgresql-common only adds a postgres user when none exists). At the essential hook only
# Essential:yes packages are installed (no useradd yet), so write the entries directly; shadow
# entries follow when passwd is configured (pwconv). Afterwards drop the cluster the package
# creates (the entrypoint initdbs into $PGDATA) and prepare the directories PostgreSQL writes.
PG_BIN=/usr/lib/postgresql/15/bin
# shellcheck disable=SC2016
PG_DEBOOTSTRAP=(--variant=minbase --include=postgresql-15 "${SLIM[@]}"
    --essential-hook='echo "postgres:x:999:999:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash" >>"$1/etc/passwd" && echo "postgres:x:999:" >>"$1/etc/group"'
    --customize-hook='rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"'
    --customize-hook='install -d -o 999 -g 999 -m 2775 "$1/run/postgresql" && install -d -o 999 -g 999 -m 0700 "$1/var/lib/postgresql/data"'
    --customize-hook="$RUNTIME_FILES")
PG_ENTRYPOINT=/usr/local/bin/pgjobs-postgres-entrypoint
PG_CONFIG=(--user 999:999 --workingdir /var/lib/postgresql
           --env "PATH=$PG_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
           --env PGDATA=/var/lib/postgresql/data/pgdata --env LANG=C.UTF-8
           --entrypoint "[\"$PG_ENTRYPOINT\"]" --port 5432/tcp
           # SIGINT: PostgreSQL's fast shutdown (SIGTERM's "smart" one waits for every client
           # to disconnect, which pooled clients never do before the grace period ends).
           --stop-signal SIGINT
           --label org.opencontainers.image.title=pgjobs-postgres
           --label "org.opencontainers.image.description=PostgreSQL 15 (Debian $SUITE) for pgjobs development")

usage() { sed -n '2,/^set -euo pipefail/{/^set/!p}' "$0" >&2; exit 2; }

archive() { # image reference -> archive path
    local name="${1#localhost/}"
    echo "$images/${name//[:\/]/_}.oci.tar"
}

app_refs() {
    echo "$APP_REPO:$APP_TAG"
    if [ -n "$extra_tag" ] && [ "$extra_tag" != "$APP_TAG" ]; then echo "$APP_REPO:$extra_tag"; fi
}

if [ "${1:-}" = --archives ]; then
    [ $# = 1 ] || usage
    for ref in "$BASE_REF" $(app_refs) "$PG_REF" "$PAUSE_REF" "$EXAMPLE_REF"; do
        echo "$ref $(archive "$ref")"
    done
    exit 0
fi
FORCE=0
case "${1:-}" in
    --force) [ $# = 1 ] || usage; FORCE=1 ;;
    "") ;;
    *) usage ;;
esac

# --- prerequisites ---------------------------------------------------------------------------
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ "$(id -u)" != 0 ]; then
    echo "build.sh: building images needs root (buildah with its own storage, mmdebstrap in root mode)${missing[*]:+ and the Debian packages ${missing[*]}}; run it as root" >&2
    exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "build.sh: missing ${missing[*]} and no apt-get to install them; install them (Debian packages of the same names)" >&2
        exit 1
    fi
    echo "Installing ${missing[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$images" "$logs" "$store"
exec 9>"$images/.lock"
if ! flock -n 9; then
    echo "another build.sh is running; waiting for it"
    flock 9
fi

# --- buildah storage under the cache -------------------------------------------------------
# overlay when the kernel can mount it on the cache's filesystem (it can here: ext4, a recent
# kernel): layers are shared, commits are fast. Otherwise (e.g. a cache on overlayfs or another
# filesystem overlay refuses as upper dir) vfs, which works everywhere but copies every layer in
# full: slower builds and several times the disk. The choice is kept in storage.conf: a storage
# root cannot change drivers without losing its images.
storage_conf="$store/storage.conf"
if ! [ -f "$storage_conf" ]; then
    driver=vfs
    probe="$(mktemp -d "$store/.probe.XXXXXX")"
    mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        driver=overlay
    fi
    rm -rf "$probe"
    printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "%s"\n' \
        "$driver" "$store/root" "$store/run" >"$storage_conf.tmp"
    mv "$storage_conf.tmp" "$storage_conf"
fi
export CONTAINERS_STORAGE_CONF="$storage_conf"
# Pushing to and pulling from oci-archive files checks a signature policy; accept local files.
policy="$store/policy.json"
[ -f "$policy" ] || echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$policy"

# Working containers and mounts to drop if a build fails half-way.
cleanup_ctrs=()
cleanup() {
    local c
    for c in "${cleanup_ctrs[@]}"; do
        buildah umount "$c" >/dev/null 2>&1 || true
        buildah rm "$c" >/dev/null 2>&1 || true
    done
    rm -rf "$images"/.*.tmp
}
trap cleanup EXIT

# --- helpers ---------------------------------------------------------------------------------
sha() { sha256sum | cut -c1-64; }
up_to_date() { # ref key: the archive exists and was built from these inputs
    local a
    a="$(archive "$1")"
    [ "$FORCE" = 0 ] && [ -f "$a" ] && [ -f "$a.stamp" ] && [ "$(head -n1 "$a.stamp")" = "$2" ]
}
image_id() { buildah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | head -n1; }
export_archive() { # ref key: write the OCI archive (atomically), then its stamp
    local a
    a="$(archive "$1")"
    rm -f "$a.stamp"
    buildah push --quiet --signature-policy "$policy" "$1" "oci-archive:$images/.$(basename "$a").tmp:$1" \
        >>"$logs/push.log" 2>&1
    mv "$images/.$(basename "$a").tmp" "$a"
    printf '%s\n%s\n' "$2" "$(image_id "$1")" >"$a.stamp"
}
ensure_in_storage() { # ref: restore an image from its archive if buildah's storage lost it
    [ -n "$(image_id "$1")" ] && return 0
    buildah pull --quiet --signature-policy "$policy" "oci-archive:$(archive "$1")" >/dev/null
}
run_logged() { # name command...: output to logs/<name>.log, its tail on failure
    local log="$logs/$1.log"
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "build.sh: failed: $* (full log: $log)" >&2
        exit 1
    fi
}
# A Debian image in one layer: mmdebstrap straight into the mounted root of a `FROM scratch`
# container (no intermediate tarball), then `finish ROOT` (a function name, or true), config.
debian_image() { # ref log-name finish mmdebstrap-args... -- buildah-config-args...
    local ref="$1" name="$2" finish="$3"
    shift 3
    local mm=() cfg=()
    while [ "$1" != -- ]; do mm+=("$1"); shift; done
    shift
    cfg=("$@")
    local c mnt
    c="$(buildah from --quiet scratch)"
    cleanup_ctrs+=("$c")
    mnt="$(buildah mount "$c")"
    run_logged "$name" mmdebstrap "${mm[@]}" "$SUITE" "$mnt"
    "$finish" "$mnt"
    buildah umount "$c" >/dev/null
    buildah config "${cfg[@]}" "$c"
    buildah commit --quiet --rm "$c" "$ref" >/dev/null
}

# --- images ----------------------------------------------------------------------------------
build_image() { # ref key what command...: run the command unless the archive is current, export
    local ref="$1" key="$2" what="$3"
    shift 3
    if up_to_date "$ref" "$key"; then
        echo "$ref up to date"
        return 0
    fi
    echo "building $ref ($what)"
    local start=$SECONDS
    "$@"
    export_archive "$ref" "$key"
    echo "built $ref in $((SECONDS - start))s"
}

build_base() {
    build_image "$BASE_REF" "$(printf '%s\n' v1 "$SUITE" "${BASE_DEBOOTSTRAP[@]}" "${BASE_CONFIG[@]}" | sha)" \
        "mmdebstrap, 1-2 min" \
        debian_image "$BASE_REF" base true "${BASE_DEBOOTSTRAP[@]}" -- "${BASE_CONFIG[@]}"
}

app_inputs() { # every file of the build context and the recipe, in a stable order
    cd "$repo"
    {
        printf '%s\0' pyproject.toml README.md .dockerignore deploy/Dockerfile
        find pgjobs -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0
        find deploy -maxdepth 1 -name 'constraints*.txt' -print0
    } | LC_ALL=C sort -z | xargs -0 sha256sum
}

# pip in the build stage trusts only its own CA list (certifi). Behind a TLS-inspecting proxy
# (as on this project's build machines) PyPI's certificate is signed by a CA only the host
# trusts: hand pip the host's CA bundle with a user pip.conf in a directory mounted over /root
# (the build stage's HOME) during RUN steps only. /root exists in the base, so no mount point
# lands in a layer (a mount on a new path would leave an empty file behind); the runtime stage
# installs from local wheels and has HOME=/tmp. Harmless elsewhere: the host bundle carries the
# public roots.
host_ca_mount() { # prints the buildah bud arguments, if any
    local bundle="${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}"
    [ -f "$bundle" ] && [ -r "$bundle" ] || return 0
    rm -rf "$store/build-home"
    mkdir -p "$store/build-home/.config/pip"
    cp "$bundle" "$store/build-home/.config/pip/ca.crt"
    printf '[global]\ncert = /root/.config/pip/ca.crt\n' >"$store/build-home/.config/pip/pip.conf"
    printf '%s\n' -v "$store/build-home:/root:ro"
}

build_app() {
    local key ref
    # The base's image id is an input too: a rebuilt base means a rebuilt app.
    key="$( { app_inputs; sed -n 2p "$(archive "$BASE_REF").stamp"; } | sha)"
    local stale=0
    while read -r ref; do up_to_date "$ref" "$key" || stale=1; done < <(app_refs)
    if [ "$stale" = 0 ]; then
        echo "$(app_refs | paste -sd' ') up to date"
        return 0
    fi
    local main="$APP_REPO:$APP_TAG"
    local start=$SECONDS
    # The image may be current with only an archive missing (a new PGJOBS_IMAGE_TAG): no rebuild.
    if ! { up_to_date "$main" "$key" && [ "$(image_id "$main")" = "$(sed -n 2p "$(archive "$main").stamp")" ]; }; then
        echo "building $main (deploy/Dockerfile)"
        ensure_in_storage "$BASE_REF"
        local host_ca
        mapfile -t host_ca < <(host_ca_mount)
        # --pull=never: the base exists only locally; host network: pip reaches PyPI.
        run_logged app buildah bud --pull=never --network host --layers=false "${host_ca[@]}" \
            --build-arg "PYTHON_IMAGE=$BASE_REF" -f "$repo/deploy/Dockerfile" -t "$main" "$repo"
        export_archive "$main" "$key"
    fi
    while read -r ref; do
        [ "$ref" = "$main" ] && continue
        up_to_date "$ref" "$key" && continue
        buildah tag "$main" "$ref"
        export_archive "$ref" "$key"
    done < <(app_refs)
    echo "built $(app_refs | paste -sd' ') in $((SECONDS - start))s"
}

install_pg_entrypoint() { install -m 0755 "$here/postgres/entrypoint.sh" "$1$PG_ENTRYPOINT"; }

build_postgres() {
    local key
    key="$( { printf '%s\n' v1 "$SUITE" "${PG_DEBOOTSTRAP[@]}" "${PG_CONFIG[@]}"; cat "$here/postgres/entrypoint.sh"; } | sha)"
    build_image "$PG_REF" "$key" "mmdebstrap, 1-2 min" \
        debian_image "$PG_REF" postgres install_pg_entrypoint "${PG_DEBOOTSTRAP[@]}" -- "${PG_CONFIG[@]}"
}

pause_image() {
    local bin="$images/.pause.tmp"
    (
        MAKE_TARGET=image
        # shellcheck source=../../tools/go-env.sh
        source "$here/../../tools/go-env.sh"
        cd "$here/pause"
        "$GO" build -trimpath -ldflags '-s -w' -o "$bin" .
    )
    local c
    c="$(buildah from --quiet scratch)"
    cleanup_ctrs+=("$c")
    buildah copy --quiet --chmod 0755 "$c" "$bin" /pause >/dev/null
    buildah config --entrypoint '["/pause"]' --user 65535:65535 \
        --label org.opencontainers.image.title=pgjobs-pause "$c"
    buildah commit --quiet --rm "$c" "$PAUSE_REF" >/dev/null
    rm -f "$bin"
}

build_pause() {
    build_image "$PAUSE_REF" "$(cat "$here/pause/go.mod" "$here/pause/main.go" | sha)" "deploy/image/pause" \
        pause_image
}

example_inputs() { # the example's sources, without what building or `pip install -e` leaves
    cd "$repo"
    find "$EXAMPLE" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
        ! -path "$EXAMPLE/build/*" ! -path "$EXAMPLE/dist/*" -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
}

example_image() {
    local work="$images/.example.tmp"
    rm -rf "$work"
    mkdir -p "$work/context"
    # The wheel is built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    cp -r "$repo/$EXAMPLE" "$work/source"
    rm -rf "$work/source/build" "$work/source/dist"
    # The wheel's build asks PyPI for setuptools (pip's cache spares the download after the first
    # time), as the pgjobs image's build does; the image step itself runs with no network at all.
    run_logged example-wheel python3 -m pip wheel --no-deps --wheel-dir "$work/context/dist" "$work/source"
    ensure_in_storage "$APP_REPO:$APP_TAG"
    run_logged example buildah bud --pull=never --network none --layers=false \
        --build-arg "PGJOBS_IMAGE=$APP_REPO:$APP_TAG" -f "$repo/$EXAMPLE/Dockerfile" -t "$EXAMPLE_REF" \
        "$work/context"
    rm -rf "$work"
}

build_example() {
    # The pgjobs image's id is an input: a rebuilt pgjobs image means a rebuilt example image.
    build_image "$EXAMPLE_REF" "$( { example_inputs; sed -n 2p "$(archive "$APP_REPO:$APP_TAG").stamp"; } | sha)" \
        "$EXAMPLE on $APP_REPO:$APP_TAG" example_image
}

build_base
build_app
build_postgres
build_pause
build_example
# Images a rebuild replaced (untagged) would pile up in the storage.
buildah rmi --prune >/dev/null 2>&1 || true
