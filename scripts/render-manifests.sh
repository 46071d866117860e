#!/usr/bin/env bash
# Render deploy/manifests/pgjobs.yaml from the chart with its default values,
# for people who install without Helm:
#
#   kubectl apply -f deploy/manifests/pgjobs.yaml
#   kubectl -n pgjobs create secret generic pgjobs-database \
#     --from-literal=PGJOBS_DATABASE_URL=postgresql://pgjobs@HOST:5432/pgjobs \
#     --from-literal=DB_PASSWORD=...
#
#   scripts/render-manifests.sh           rewrite the file
#   scripts/render-manifests.sh --stdout  print what the file should contain
#
# Uses helm from PATH, else the one tools/helm/build.sh builds (built if missing).
# tests/unit/test_chart.py checks the checked-in file is current.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out=deploy/manifests/pgjobs.yaml

helm="${HELM:-}"
if [ -z "$helm" ]; then
    helm="$(tools/helm/build.sh --bin)"
    [ -x "$helm" ] || tools/helm/build.sh >&2
fi

render() {
    cat <<'HEADER'
# pgjobs: raw manifests rendered from helm/pgjobs with its default values by
# scripts/render-manifests.sh (`make manifests`). Do not edit by hand.
# The pods expect a Secret pgjobs-database with PGJOBS_DATABASE_URL and DB_PASSWORD
# (see the script's header for the command).
---
apiVersion: v1
kind: Namespace
metadata:
  name: pgjobs
HEADER
    # No hooks: kubectl would run the uninstall hook's Job at once (it is for `helm uninstall`).
    # No logs API: its serving certificate is made per install (a file shared by every user would
    # share its private key), so `kubectl pgjobs logs` needs the chart; `pgjobs logs` works.
    "$helm" template pgjobs helm/pgjobs --namespace pgjobs --include-crds --no-hooks \
        --set operator.logsApi.enabled=false
}

case "${1:-}" in
    --stdout) render ;;
    "") render >"$out.tmp" && mv "$out.tmp" "$out" && echo "wrote $out" ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
