"""Checks before the operator handles anything: the API server answers and serves our PgJob API.

Without them, an unreachable API server or a CRD older than the operator shows as a stream of
kopf tracebacks, or worse, as fields the API server silently drops. Each problem is one line
that says what to do, and the operator exits (its pod restarts and tries again).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from pgjobs import crd
from pgjobs.operator import kube

CRD_PATH = (
    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions?fieldSelector=metadata.name={crd.CRD_NAME}"
)
INSTALL_CRD = "kubectl apply --server-side -f crds/pgjobs.dev_pgjobs.yaml (Helm never upgrades CRDs)"


class CannotStart(ValueError):
    """The operator cannot start; the message says why and what to do."""


async def check_api(api: kube.KubeApi, where: str) -> None:
    """Raise CannotStart unless the API server at `where` answers and has our CRD, current."""
    try:
        found: Any = await api.request("GET", CRD_PATH)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise CannotStart(
            f"cannot reach the Kubernetes API server at {where}: {error or type(error).__name__}; "
            "check --kubeconfig (or the pod's service account) and that the API server runs"
        ) from None
    except kube.KubeError as error:
        if error.status in (401, 403):
            raise CannotStart(
                f"the Kubernetes API server at {where} refused the operator ({error.status}): "
                "its credentials or RBAC are wrong; the chart's ClusterRole lets it list CRDs"
            ) from None
        raise CannotStart(f"the Kubernetes API server at {where} answered {error}") from None
    items = found.get("items") or []
    if not items:
        raise CannotStart(f"the PgJob CRD ({crd.CRD_NAME}) is not installed: {INSTALL_CRD}")
    missing = crd.missing_fields(items[0])
    if missing:
        raise CannotStart(
            f"the PgJob CRD in the cluster is older than this operator (it lacks "
            f"{', '.join(missing)}): {INSTALL_CRD}"
        )
