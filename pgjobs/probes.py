"""Where the probe endpoints of the worker and the operator listen: one rule for both."""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Where the probe endpoints listen when no address is set (`probe_address`): in a pod, every
#: interface of the pod's own network namespace (its IP, which the kubelet probes, and its
#: loopback); outside a pod, the loopback only.
PROBE_ADDRESS_IN_POD = "0.0.0.0"  # noqa: S104
PROBE_ADDRESS_OUTSIDE_POD = "127.0.0.1"


def probe_address(configured: str = "", environ: Mapping[str, str] = os.environ) -> str:
    """The address the probe endpoints listen on: the operator's /healthz (`--liveness-address`)
    and the worker's /healthz and /readyz (`--health-address`).

    `configured` when set. Otherwise, in a pod (the kubelet sets KUBERNETES_SERVICE_HOST in every
    container), every interface: the kubelet probes the pod's IP, and a pod's network namespace
    holds only that and its loopback. Elsewhere only the loopback, so that an operator or a
    worker started by hand does not answer the network. A pod with `hostNetwork: true` shares the
    node's interfaces: give it an address (e.g. the pod IP through the downward API).
    """
    if configured:
        return configured
    return PROBE_ADDRESS_IN_POD if environ.get("KUBERNETES_SERVICE_HOST") else PROBE_ADDRESS_OUTSIDE_POD
