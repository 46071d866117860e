"""What `helm uninstall` runs first (the chart's pre-delete hook): let go of every PgJob.

A PgJob carries the operator's finalizer (`pgjobs.dev/row`) so that deleting it waits until the
operator has deleted its row. Once the operator is uninstalled, nothing would remove that
finalizer: deleting a PgJob, or its namespace, would hang for ever. So before Helm deletes
anything, the hook stops the operator (scales its Deployment to zero and waits for its pods to
go, so no replica adds the finalizer back) and removes the finalizer from every PgJob it
watched. The PgJobs themselves stay, and so do their rows: the database belongs to the user,
and a later install picks both up again (its operator adds the finalizers back).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from urllib.parse import quote

from pgjobs.operator import kube

logger = logging.getLogger(__name__)

POLL_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class Target:
    """The operator to stop and the PgJobs it watched."""

    namespace: str
    deployment: str
    #: Namespaces the operator watched; empty: all.
    watched: tuple[str, ...]
    finalizer: str
    timeout: float = 120.0


async def release_pgjobs(api: kube.KubeApi, target: Target) -> int:
    """Stop the operator, then remove its finalizer from every PgJob; how many were released."""
    selector = await _stop_operator(api, target)
    await _wait_for_no_pods(api, target, selector)
    released = 0
    for identity in await api.list_identities(target.watched):
        released += await _remove_finalizer(api, identity.namespace, identity.name, target.finalizer)
    logger.info("released %d PgJob(s) from the finalizer %s", released, target.finalizer)
    return released


async def _stop_operator(api: kube.KubeApi, target: Target) -> str:
    path = f"/apis/apps/v1/namespaces/{quote(target.namespace)}/deployments/{quote(target.deployment)}"
    try:
        deployment = await api.request("GET", path)
    except kube.KubeError as error:
        if error.status == 404:
            return ""  # already gone: nothing can add the finalizer back
        raise
    await api.request("PATCH", f"{path}/scale", {"spec": {"replicas": 0}}, "application/merge-patch+json")
    labels = deployment["spec"]["selector"].get("matchLabels", {})
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


async def _wait_for_no_pods(api: kube.KubeApi, target: Target, selector: str) -> None:
    if not selector:
        return
    path = f"/api/v1/namespaces/{quote(target.namespace)}/pods?labelSelector={quote(selector)}"
    deadline = time.monotonic() + target.timeout
    while (pods := (await api.request("GET", path)).get("items") or []) and time.monotonic() < deadline:
        logger.info("waiting for %d operator pod(s) to stop", len(pods))
        await asyncio.sleep(POLL_INTERVAL)
    if pods:
        raise TimeoutError(f"operator pods still running after {target.timeout:.0f}s: the finalizers stay")


async def _remove_finalizer(api: kube.KubeApi, namespace: str, name: str, finalizer: str) -> int:
    """1 when the finalizer was removed, 0 when the PgJob had none or is gone."""
    while True:
        pgjob = await api.get_pgjob(namespace, name)
        finalizers = (pgjob or {}).get("metadata", {}).get("finalizers") or []
        if pgjob is None or finalizer not in finalizers:
            return 0
        # The resourceVersion makes the patch conditional: another writer's change is not undone.
        body = {
            "metadata": {
                "finalizers": [f for f in finalizers if f != finalizer],
                "resourceVersion": pgjob["metadata"]["resourceVersion"],
            }
        }
        try:
            await api.request(
                "PATCH", f"{kube.pgjobs_path(namespace)}/{quote(name)}", body, "application/merge-patch+json"
            )
        except kube.KubeError as error:
            if error.status == 409:
                continue
            if error.status == 404:
                return 0
            raise
        return 1
