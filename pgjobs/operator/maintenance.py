"""Maintenance (leader only): orphan clean-up, missing rows, rescue sweep, TTL deletion, worker
pruning, records of deleted PgJobs, gauges.

Each step is idempotent and runs in its own try block: one failing (the API server is down)
does not keep the others (the rescue sweep needs only PostgreSQL) from running.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from pgjobs.operator import context, handlers, liveness, metrics, outages
from pgjobs.store import horizon, jobs, queries, resources, workers

logger = logging.getLogger(__name__)

#: TTL deletions per round: a backlog drains over a few rounds instead of one burst.
TTL_BATCH = 50
#: How often the leader looks for PgJobs without a row, and how old one must be to count:
#: a new PgJob normally has its row well within a second.
ADOPT_EVERY = 30.0
ADOPT_AFTER = 10.0


async def remove_orphans(ctx: context.Context) -> int:
    """Delete rows whose PgJob vanished (e.g. while the operator was down).

    The database is read before the API server: a row in that snapshot belongs to a PgJob that
    existed before the listing began, so a uid missing from the listing is really gone. (The
    other order would delete the rows of PgJobs created between the two reads.)
    """
    async with ctx.database.connection() as conn:
        keys = await _watched_keys(ctx, conn)
    if not keys:
        return 0
    present = {pgjob.uid for pgjob in await ctx.kube.list_identities(ctx.settings.namespaces)}
    return await _delete_gone(ctx, keys, present)


async def _watched_keys(ctx: context.Context, conn: queries.Connection) -> list[str]:
    """The PgJob uids of the rows in the namespaces this operator watches."""
    return [uid for uid, ns in await resources.list_keys(conn) if ctx.settings.watches(ns)]


async def _delete_gone(ctx: context.Context, keys: list[str], present: set[str]) -> int:
    gone = [uid for uid in keys if uid not in present]
    if not gone:
        return 0
    async with ctx.database.connection() as conn:
        removed = await jobs.delete_resources(conn, gone)
    metrics.ORPHANS_REMOVED.inc(removed)
    logger.info("removed %d rows whose PgJob no longer exists", removed)
    return removed


async def adopt_missing(ctx: context.Context) -> None:
    """Give a row to every PgJob that has none a while after its creation, and remove the rows
    whose PgJob is gone.

    Rows come from kopf's handlers, which act on watch events; an event kopf never hands to a
    handler (seen once, under heavy load, with the replica that added the finalizer killed)
    would otherwise leave a PgJob Pending for ever with no job behind it. This level-based
    sweep is the safety net: a paged, metadata-only listing every `ADOPT_EVERY` seconds, and
    the handler's own code for each PgJob it finds without a row.
    """
    now = time.monotonic()
    if now - ctx.leading_since < ADOPT_EVERY or now - ctx.adopted_at < ADOPT_EVERY:
        return
    ctx.adopted_at = now
    # The database first: a PgJob listed afterwards whose row is not in this snapshot and which
    # is older than ADOPT_AFTER has really been without one for that long.
    async with ctx.database.connection() as conn:
        keys = await _watched_keys(ctx, conn)
    rows = set(keys)
    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ADOPT_AFTER)
    listing = await ctx.kube.list_identities(ctx.settings.namespaces)
    # The same two reads find rows whose PgJob is gone: a create that committed after another
    # replica's delete had removed the finalizer, or a deletion missed while no one led.
    await _delete_gone(ctx, keys, {pgjob.uid for pgjob in listing})
    for pgjob in listing:
        if pgjob.uid in rows or pgjob.deleting or pgjob.created > cutoff:
            continue
        body = await ctx.kube.get_pgjob(pgjob.namespace, pgjob.name)
        if body is None or not _rowless(body, pgjob.uid):
            continue
        logger.warning(
            "PgJob %s/%s had no row %ds after creation: creating it", pgjob.namespace, pgjob.name, ADOPT_AFTER
        )
        try:
            await handlers.apply_spec(ctx, body)
        except kopf.PermanentError:  # refused: its status says why
            continue
        metrics.ROWS_ADOPTED.inc()


def _rowless(body: dict[str, Any], uid: str) -> bool:
    """Still the same PgJob, not being deleted, not one the handler refused (status Failed, unless
    an older operator failed it for an outage), and not one whose run is over (its row may be
    gone, its work must not run twice)."""
    meta, status = body["metadata"], body.get("status") or {}
    if handlers.run_is_over(body) or meta["uid"] != uid or meta.get("deletionTimestamp"):
        return False
    return status.get("phase") != "Failed" or outages.failed_by_an_outage(body)


async def rescue(ctx: context.Context) -> None:
    """The sweep, once this replica has led for a full stall timeout: a new leader may just have
    come back from a database outage, and workers need that long to reconnect and heartbeat
    before their jobs can be called stalled."""
    if time.monotonic() - ctx.leading_since < ctx.settings.stall_timeout:
        return
    async with ctx.database.connection() as conn:
        rescued = await jobs.rescue(conn, ctx.settings.stall_timeout)
    for job in rescued:
        metrics.RESCUES.labels(job.state.phase).inc()
        logger.info("rescued job %d from a silent worker: now %s", job.id, job.state.phase)


async def delete_expired(ctx: context.Context) -> None:
    """Delete PgJobs past ttlSecondsAfterFinished; their finalizer then removes the rows."""
    async with ctx.database.connection() as conn:
        expired = await jobs.list_expired(conn, TTL_BATCH)
    for row in expired:
        await _delete_expired_one(ctx, row)


async def _delete_expired_one(ctx: context.Context, row: Mapping[str, Any]) -> None:
    """Delete one expired PgJob, unless it was restarted since the row was listed: the delete
    is preconditioned on the version read here, as the plugin's prune does."""
    namespace, name, uid = row["resource_namespace"], row["resource_name"], row["resource_uid"]
    body = await ctx.kube.get_pgjob(namespace, name)
    if body is not None and body["metadata"]["uid"] == uid:
        if int((body.get("spec") or {}).get("restarts") or 0) != row["restarts"]:
            return  # restarted since the listing: the operator makes it a new run instead
        # Fenced: a leader frozen since the listing must not delete a PgJob restarted meanwhile.
        ctx.fence()
        version = str(body["metadata"]["resourceVersion"])
        if await ctx.kube.delete_pgjob(namespace, name, uid, version):
            metrics.TTL_DELETIONS.inc()
            logger.info("deleted PgJob %s/%s: ttlSecondsAfterFinished has passed", namespace, name)
            return
        if await ctx.kube.get_pgjob(namespace, name) is not None:
            return  # changed after our read (a restart, a label): the next sweep looks again
    async with ctx.database.connection() as conn:  # the PgJob is gone already: only the row is left
        await jobs.delete_resource(conn, uid)


#: Finished rows without a PgJob deleted per statement: a bounded transaction.
PRUNE_BATCH = 1000


async def prune_finished(ctx: context.Context) -> None:
    """Delete finished rows past their retention, batch after batch while batches come back full,
    for at most half a round: one batch a round (200 rows/s at the default interval) fell behind
    a deployment finishing ~1,000 jobs/s steadily, whose table then grew for good (bench soak)."""
    deadline = time.monotonic() + ctx.settings.maintenance_interval / 2
    total = 0
    while True:
        async with ctx.database.connection() as conn:
            pruned = await jobs.prune_finished(conn, ctx.settings.finished_retention, PRUNE_BATCH)
        total += pruned
        metrics.FINISHED_PRUNED.inc(pruned)
        if pruned < PRUNE_BATCH or time.monotonic() >= deadline:
            break
    if total:
        logger.info("deleted %d finished jobs without a PgJob past their retention", total)


async def prune_workers(ctx: context.Context) -> None:
    async with ctx.database.connection() as conn:
        pruned = await workers.prune(conn, ctx.settings.worker_retention)
        alive = await workers.count_alive(conn)
    metrics.WORKERS_ALIVE.set(alive)
    if pruned:
        logger.info("forgot %d workers that stopped or died long ago", pruned)


async def forget_deleted(ctx: context.Context) -> None:
    """Drop the records that keep deleted PgJobs from getting a row back, once a day old."""
    async with ctx.database.connection() as conn:
        await resources.forget_deleted(conn)


async def update_gauges(ctx: context.Context) -> None:
    async with ctx.database.connection() as conn:
        metrics.set_job_counts(await jobs.count_by_state(conn))
        metrics.set_oldest_due(await jobs.oldest_due_by_queue(conn))
        metrics.UNSYNCED.set(await resources.count_unsynced(conn))
        oldest = await horizon.oldest_snapshot(conn)
    metrics.OLDEST_SNAPSHOT.set(oldest.age_seconds)
    _say_once_if_partial(oldest)


_partial_view_reported: set[str] = set()


def _say_once_if_partial(oldest: horizon.OldestSnapshot) -> None:
    if oldest.sees_all_sessions or oldest.role in _partial_view_reported:
        return
    _partial_view_reported.add(oldest.role)
    logger.warning(
        "pgjobs_oldest_snapshot_age_seconds counts only the transactions of role %r, which may not "
        "read other sessions' activity: GRANT pg_monitor TO %s; to watch every session",
        oldest.role,
        oldest.role,
    )


STEPS: tuple[Callable[[context.Context], Awaitable[None]], ...] = (
    rescue,
    adopt_missing,
    delete_expired,
    prune_finished,
    prune_workers,
    forget_deleted,
    update_gauges,
)


#: What an outage of the API server or the database raises: worth one line, not a traceback.
UNREACHABLE = handlers.UNREACHABLE


async def run_once(ctx: context.Context) -> None:
    for step in STEPS:
        try:
            await step(ctx)
        except context.NotLeading:
            raise
        except UNREACHABLE as error:  # retried next round
            logger.warning("maintenance step %s failed: %s", step.__name__, error)
        except Exception:  # unexpected: the traceback says where
            logger.warning("maintenance step %s failed", step.__name__, exc_info=True)


async def run(ctx: context.Context) -> None:
    """Rounds until cancelled (when this replica stops leading)."""
    while True:
        ctx.went_round(liveness.MAINTENANCE)
        await run_once(ctx)
        context.stop_if_cancelled()
        await asyncio.sleep(ctx.settings.maintenance_interval)
