"""PgQueues: each one's spec copied into `pgjobs.queues`, where every worker's claim reads it, and
every queue's counts written back as its status.

Kubernetes owns the intent, as for PgJobs. A watch-event handler (every replica, idempotent: the
row changes only when the spec does) copies a PgQueue's spec as soon as it changes, so a pause
reaches the claims within moments. The leading replica's round (every maintenance interval)
is the level-based safety net and the status writer: it copies every PgQueue's spec again,
drops the rows of PgQueues that are gone (a deletion missed while no operator ran must not
leave a queue paused), creates a PgQueue for every queue in use that has none (so that
`kubectl get pgqueues` lists every queue), and patches the statuses that changed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import types
from collections.abc import Mapping
from typing import Any

import kopf

from pgjobs import crd
from pgjobs.operator import context, handlers, kube
from pgjobs.store import queues

logger = logging.getLogger(__name__)

RESOURCE = (crd.GROUP, crd.VERSION, crd.QUEUE_PLURAL)
Json = dict[str, Any]


class BadSpec(ValueError):
    """A PgQueue spec the database would refuse (an older CRD let it through)."""


def spec_of(body: Mapping[str, Any]) -> queues.QueueSpec:
    """The row a PgQueue asks for (the CRD has validated the name and the spec; what an older
    CRD may have let through is refused here, BadSpec, rather than by the database)."""
    spec = body.get("spec") or {}
    max_running = spec.get("maxRunning")
    max_per_second = spec.get("maxPerSecond")
    if max_running is not None and not (_is_number(max_running, int) and max_running >= 0):
        raise BadSpec(f"maxRunning must be a whole number of 0 or more, not {max_running!r}")
    if max_per_second is not None and not (
        _is_number(max_per_second, int | float) and 0 < max_per_second < math.inf
    ):
        raise BadSpec(f"maxPerSecond must be a number above 0, not {max_per_second!r}")
    return queues.QueueSpec(
        name=body["metadata"]["name"],
        resource_uid=body["metadata"]["uid"],
        paused=bool(spec.get("paused", False)),
        max_running=None if max_running is None else int(max_running),
        max_per_second=None if max_per_second is None else float(max_per_second),
    )


def _is_number(value: object, kind: type | types.UnionType) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)  # JSON true is no number


@kopf.on.event(*RESOURCE, registry=handlers.registry)
async def copy_spec(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """Copy the spec on every watch event; a deleted PgQueue's row goes with it."""
    body = event.get("object") or {}
    if not body.get("metadata", {}).get("uid"):
        return
    ctx = context.of(memo)
    try:
        async with ctx.database.connection() as conn:
            if event.get("type") == "DELETED" or body["metadata"].get("deletionTimestamp"):
                await queues.remove(conn, body["metadata"]["uid"])
            else:
                await queues.apply(conn, spec_of(body))
    except BadSpec as error:
        logger.warning("PgQueue %s not copied: %s", body["metadata"]["name"], error)
    except handlers.UNREACHABLE as error:  # kopf retries no event handler: one line, not a traceback
        logger.warning(
            "PgQueue %s not copied: %s; the leader's next round copies it", body["metadata"]["name"], error
        )


def status_of(stats: queues.QueueStats, generation: int | None) -> Json:
    oldest = stats.oldest_due_since
    status: Json = {
        "pending": stats.pending,
        "running": stats.running,
        "workers": stats.workers,
        # A merge patch removes the field with None: no job waits any more.
        "oldestPendingSince": None if oldest is None else kube.timestamp(oldest),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


class QueueKeeper:
    """The leader's round over the queues; remembers the statuses it wrote, to write changes only."""

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self.written: dict[str, Json] = {}
        #: Whether the last round found no PgQueue CRD (and said so once).
        self.crd_missing = False

    async def run(self) -> None:
        """Rounds until cancelled (when this replica stops leading)."""
        while True:
            try:
                await self.run_once()
                self.crd_missing = False
            except kube.KubeError as error:
                if error.status != 404:
                    logger.warning("queues not kept: %s", error)
                elif not self.crd_missing:
                    self.crd_missing = True
                    logger.warning(
                        "the PgQueue CRD is not installed: queues cannot be paused or capped"
                        " (kubectl apply --server-side -f crds/)"
                    )
            except handlers.UNREACHABLE as error:  # retried next round
                logger.warning("queues not kept: %s", error)
            context.stop_if_cancelled()
            await asyncio.sleep(self.ctx.settings.maintenance_interval)

    async def run_once(self) -> None:
        listed = await self.ctx.kube.list_objects(crd.QUEUE_PLURAL, ())
        by_name = {body["metadata"]["name"]: body for body in listed}
        async with self.ctx.database.connection() as conn:
            for body in listed:
                if not body["metadata"].get("deletionTimestamp"):
                    try:
                        await queues.apply(conn, spec_of(body))
                    except BadSpec:  # said by copy_spec when it came; its row keeps the last good spec
                        continue
            for gone in await queues.remove_others(conn, [body["metadata"]["uid"] for body in listed]):
                logger.info("queue %s: its PgQueue is gone, so it is no longer paused or capped", gone)
            stats = await queues.list_stats(conn)
        for queue in stats:
            found = by_name.get(queue.name) or await self._create(queue.name)
            if found is not None:
                await self._write_status(found, queue)
        for name in set(self.written) - {queue.name for queue in stats}:
            del self.written[name]

    async def _create(self, name: str) -> Json | None:
        """A PgQueue for a queue in use that has none (unpaused, uncapped); None if another
        replica or a user created it meanwhile (the next round finds it)."""
        body: Json = {
            "apiVersion": crd.API_VERSION,
            "kind": crd.QUEUE_KIND,
            "metadata": {"name": name, "labels": {crd.QUEUE_CREATED_LABEL: "true"}},
            "spec": {},
        }
        created = await self.ctx.kube.create_object(crd.QUEUE_PLURAL, body)
        if created is not None:
            logger.info("queue %s is in use: created its PgQueue", name)
        return created

    async def _write_status(self, body: Json, stats: queues.QueueStats) -> None:
        meta = body["metadata"]
        status = status_of(stats, meta.get("generation"))
        if self.written.get(stats.name) == status:
            return
        if await self.ctx.kube.patch_object_status(crd.QUEUE_PLURAL, meta["name"], status, meta["uid"]):
            self.written[stats.name] = status
