"""`pgjobs operator`: kopf embedded in our own event loop, next to leadership and its duties.

kopf watches PgJobs and runs the handlers in every replica (`--standalone`: no kopf peering,
which pauses replicas rather than electing one). Our loops (status sync, maintenance) run only
in the replica that holds the PostgreSQL advisory lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, cast

import kopf

from pgjobs import crd, probes
from pgjobs.operator import (
    context,
    cronjobs,
    externalmetrics,
    handlers,
    kube,
    leadership,
    maintenance,
    metrics,
    pgqueues,
    policy,
    preflight,
    syncing,
)
from pgjobs.operator.database import Database
from pgjobs.operator.settings import OperatorSettings
from pgjobs.store import connecting, migrating

logger = logging.getLogger(__name__)

#: The status sync reads and records on one connection at a time; a spare for a broken one.
SYNC_CONNECTIONS = 2


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """kopf's "last handled spec", kept in memory instead of an annotation on every PgJob.

    The default storage costs one extra PATCH per created PgJob. Our handlers are level-based
    (one `reconcile` for create, resume and update), so after a restart, when this memory is
    empty and kopf sees every object as new, reconciling them all again is right and cheap.
    What is kept is a digest of the spec, not the spec (a PgJob's args may be large, and one
    tenant's PgJobs must not grow the operator), and an entry goes when its PgJob is being
    deleted: memory follows the PgJobs that exist, not every one ever handled.
    """

    def __init__(self) -> None:
        super().__init__()
        self._essences: dict[str, kopf.BodyEssence] = {}

    def __len__(self) -> int:
        return len(self._essences)

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        """A digest of the spec: all that `reconcile` reads, so the only change it must react to.

        kopf's own essence deep-copies the whole object (managedFields, status) for every watch
        event, then throws most of it away: a few percent of the operator's CPU under a burst.
        Label and annotation changes no longer call `reconcile`, which would change nothing.
        """
        if extra_fields:  # no handler of ours asks for more; kopf's way if one ever does
            return super().build(body=body, extra_fields=extra_fields)
        spec = body.get("spec")
        return cast(kopf.BodyEssence, {"spec": {"sha256": spec_digest(spec)}} if spec else {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self._essences.get(body.metadata.uid or "")

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        uid = body.metadata.uid or ""
        if body.metadata.get("deletionTimestamp"):
            self._essences.pop(uid, None)
        else:
            self._essences[uid] = essence


def spec_digest(spec: Any) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = crd.FINALIZER
    settings.persistence.diffbase_storage = MemoryDiffBaseStorage()
    # kopf posts an Event per handler outcome; ours are the job transitions. Keep only problems.
    settings.posting.level = logging.WARNING
    # A watch stream that goes silent (a dropped connection through a load balancer) is
    # reopened instead of leaving the operator deaf.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    return settings


def quiet_kopf_successes() -> None:
    """kopf logs two INFO lines per handled PgJob ("Handler 'reconcile' succeeded.", "Creation
    is processed"): 2,000 lines and a few percent of the operator's CPU for a burst of 1,000.
    Their failures are warnings and errors, which stay; `--log-level debug` shows everything."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def main(database_settings: connecting.DatabaseSettings, settings: OperatorSettings) -> int:
    quiet_kopf_successes()
    handlers.allow_api_server_depth()
    asyncio.run(run(database_settings, settings))
    return 0


async def run(database_settings: connecting.DatabaseSettings, settings: OperatorSettings) -> None:
    # First: a policy file that cannot be used stops the operator before it handles any PgJob.
    loaded_policy = policy.load(settings.policy_file)
    await _check_schema(database_settings)
    await _check_api(settings)
    database = Database(database_settings)
    sync_database = Database(database_settings, max_size=SYNC_CONNECTIONS)
    await database.open()
    await sync_database.open()
    ctx = context.Context(
        settings,
        database_settings,
        database,
        kube.KubeApi.load(settings.kubeconfig),
        sync_database,
        policy=loaded_policy,
    )
    metrics.serve(settings.metrics_port)
    stop_external_metrics = await _serve_external_metrics(ctx)
    ctx.background.append(
        asyncio.create_task(leadership.run(ctx, lambda: lead(ctx)), name="pgjobs-leadership")
    )
    try:
        await kopf.operator(
            registry=handlers.registry,
            settings=kopf_settings(),
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=liveness_endpoint(settings),
            memo=kopf.Memo(context=ctx),
        )
    finally:
        if stop_external_metrics is not None:
            await stop_external_metrics()
        await ctx.shutdown()  # when kopf failed to start, its cleanup has not run


def liveness_endpoint(settings: OperatorSettings) -> str | None:
    """kopf's liveness URL: `--liveness-address` ("": every interface in a pod, where the kubelet
    probes the pod's IP, else the loopback) and `--liveness-port` (0: none)."""
    if not settings.liveness_port:
        return None
    address = probes.probe_address(settings.liveness_address)
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{settings.liveness_port}/healthz"


async def _serve_external_metrics(ctx: context.Context) -> Callable[[], Awaitable[None]] | None:
    """The worker HPA's metric and PgJob logs; a failure to serve them is logged, not fatal to the
    operator."""
    settings = ctx.settings
    if not settings.external_metrics_port:
        return None
    try:
        return await externalmetrics.serve(
            ctx.kube, ctx.database, settings.external_metrics_port, Path(settings.serving_cert_dir)
        )
    except (OSError, RuntimeError, kube.KubeError) as error:
        logger.error("the external metrics API (worker HPA) and the logs API are not served: %s", error)
        return None


async def lead(ctx: context.Context) -> None:
    """The leader's duties: clean up orphans first (so no status goes to a reused name), then loop:
    status sync, maintenance, the PgCronJob schedules and the PgQueues."""
    ctx.rounds.clear()  # a new term: its loops have not gone round yet
    await _until_done(lambda: maintenance.remove_orphans(ctx), "orphan clean-up", ctx)
    async with asyncio.TaskGroup() as group:
        group.create_task(syncing.Syncer(ctx).run(), name="pgjobs-status-sync")
        group.create_task(maintenance.run(ctx), name="pgjobs-maintenance")
        group.create_task(cronjobs.Scheduler(ctx).run(), name="pgjobs-cronjobs")
        group.create_task(pgqueues.QueueKeeper(ctx).run(), name="pgjobs-queues")


async def _until_done(step: Any, what: str, ctx: context.Context) -> None:
    while True:
        try:
            await step()
            return
        except Exception as error:
            context.stop_if_cancelled()
            logger.warning("%s failed, retrying: %s", what, error)
            await asyncio.sleep(ctx.settings.maintenance_interval)


async def _check_api(settings: OperatorSettings) -> None:
    """Fail at start, in one line, when the API server is away or serves an older PgJob CRD."""
    api = kube.KubeApi.load(settings.kubeconfig)
    try:
        await preflight.check_api(api, api.host)
    finally:
        await api.close()


async def _check_schema(settings: connecting.DatabaseSettings) -> None:
    """Fail at start, with a clear message, against a database that is absent or not migrated."""
    conn = await connecting.connect(settings)
    async with conn:
        await migrating.check(conn)
