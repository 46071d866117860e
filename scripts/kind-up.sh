#!/usr/bin/env bash
# Create a kind cluster for pgjobs, load the pgjobs:dev image and install the
# chart with its dev PostgreSQL (postgresql.enabled=true). For machines with
# Docker; without it, `make cluster` runs a real node on the host instead.
#
# Environment: KIND_CLUSTER (default pgjobs), KIND_NODE_IMAGE (optional),
#              HELM_ARGS (extra arguments for helm upgrade --install).
# Afterwards:  make kind-e2e
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cluster="${KIND_CLUSTER:-pgjobs}"
kubeconfig="${PGJOBS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgjobs}/kind/$cluster.kubeconfig"

missing=()
command -v docker >/dev/null 2>&1 || missing+=("docker (https://docs.docker.com/engine/install/)")
command -v kind >/dev/null 2>&1 || missing+=("kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (https://kubernetes.io/docs/tasks/tools/)")
command -v helm >/dev/null 2>&1 || missing+=("helm (https://helm.sh/docs/intro/install/, or make helm)")
if [ ${#missing[@]} -gt 0 ]; then
    echo "kind-up: missing tools:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    echo "Without Docker, the e2e tests use the local control plane: make controlplane" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "kind-up: docker is installed but the daemon is not reachable ('docker info' fails)." >&2
    exit 1
fi

mkdir -p "$(dirname "$kubeconfig")"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    echo "kind cluster '$cluster' exists; reusing it"
    kind get kubeconfig --name "$cluster" >"$kubeconfig"
else
    kind create cluster --name "$cluster" --config deploy/kind/cluster.yaml \
        --kubeconfig "$kubeconfig" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
export KUBECONFIG="$kubeconfig"

docker build -t pgjobs:dev -f deploy/Dockerfile .
kind load docker-image pgjobs:dev --name "$cluster"

# pullPolicy Never: the image only exists inside the kind nodes. The dev PostgreSQL gives the
# release a database (HELM_ARGS can point it at another: --set postgresql.enabled=false,...).
# shellcheck disable=SC2086
helm upgrade --install pgjobs helm/pgjobs --namespace pgjobs --create-namespace \
    --set image.repository=pgjobs --set image.tag=dev --set image.pullPolicy=Never \
    --set postgresql.enabled=true --wait --timeout 5m ${HELM_ARGS:-}
echo "pgjobs installed in namespace pgjobs"

echo
echo "export KUBECONFIG=$kubeconfig"
echo "the opt-in suite against it: make kind-e2e"
