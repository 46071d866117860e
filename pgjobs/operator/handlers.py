"""kopf handlers: each PgJob spec becomes, and stays, one row keyed by the PgJob's uid.

Handlers are level-based: create, resume and every spec update run the same `reconcile`,
which brings the row in line with the whole spec (upsert, stopped, restarts, generation). So a
replayed event, a second operator replica or an operator restart changes nothing twice, and a
change made while the operator was down is applied when it comes back.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import kopf
import psycopg

from pgjobs import crd
from pgjobs.operator import context, kube, outages, policy
from pgjobs.states import FINISHED_STATES, JobState, Priority
from pgjobs.store import connecting, jobs, queries, resources
from pgjobs.store.records import InvalidJob, NewJob, ResourceJob

registry = kopf.OperatorRegistry()
RESOURCE = (crd.GROUP, crd.VERSION, crd.PLURAL)

logger = logging.getLogger(__name__)


def resource_job(body: Mapping[str, Any]) -> ResourceJob:
    """The row a PgJob asks for (the CRD has defaulted and validated the spec)."""
    spec = body.get("spec", {})
    meta = body["metadata"]
    job = NewJob(
        task=spec["task"],
        args=spec.get("args") or {},
        priority=Priority.parse(spec.get("priority", NewJob.priority.label)),
        queue=spec.get("queue", NewJob.queue),
        max_attempts=int(spec.get("maxAttempts", NewJob.max_attempts)),
        backoff_seconds=int(spec.get("backoffSeconds", NewJob.backoff_seconds)),
        timeout_seconds=spec.get("timeoutSeconds"),
        run_at=run_at_of(spec.get("runAt")),
        unique_key=spec.get("uniqueKey"),
    )
    return ResourceJob(
        uid=meta["uid"],
        namespace=meta["namespace"],
        name=meta["name"],
        job=job,
        stopped=bool(spec.get("stopped", False)),
        restarts=int(spec.get("restarts", 0)),
        ttl_seconds_after_finished=spec.get("ttlSecondsAfterFinished"),
    )


def run_at_of(value: object) -> datetime.datetime | None:
    """spec.runAt as a time (RFC 3339; the CRD checks the format), None when unset."""
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidJob(f"spec.runAt {value!r} is not an RFC 3339 time, e.g. 2026-12-24T18:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


@kopf.on.login(registry=registry)
def login(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """--kubeconfig, else in-cluster, else KUBECONFIG: the same credentials as our own client."""
    # A registry of our own does not get kopf's default login handlers.
    return kube.connection_info(context.of(memo).settings.kubeconfig, settings.networking.trust_env)


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """The operator stops: end leadership (frees the lock for another replica) and our loops."""
    await context.of(memo).shutdown()


#: A failed handler (PostgreSQL away) is retried after this many seconds, not kopf's default 60.
RETRY_BACKOFF = 2.0
#: An error that is not an outage is retried this many times, then the PgJob is Failed with it:
#: retrying a bug or a value the database refuses for ever helps no one and hides the reason.
UNEXPECTED_ERROR_RETRIES = 3
#: What an outage of the API server or the database raises: retried for as long as it lasts.
UNREACHABLE = (
    aiohttp.ClientError,
    kube.KubeError,
    psycopg.OperationalError,
    connecting.DatabaseError,
    TimeoutError,
)
#: The depth of JSON the API server accepts (its decoder's limit, as Go's encoding/json).
API_SERVER_MAX_JSON_DEPTH = 10_000


def allow_api_server_depth() -> None:
    """Let this process read every object the API server serves.

    A CRD cannot bound the depth of `args` (it keeps unknown fields), so a PgJob nested 10,000
    deep is stored; kopf reads its watch events and listings with Python's json, which needs a
    level of recursion per level of nesting (more for a copy or a diff), and a RecursionError
    there ends the operator for every namespace. The handler refuses such a PgJob; reading it
    must only work. The C stack of the main thread holds this depth with room to spare.
    """
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * API_SERVER_MAX_JSON_DEPTH))


@kopf.on.resume(*RESOURCE, registry=registry, backoff=RETRY_BACKOFF)
@kopf.on.create(*RESOURCE, registry=registry, backoff=RETRY_BACKOFF)
@kopf.on.update(*RESOURCE, registry=registry, backoff=RETRY_BACKOFF)
async def reconcile(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    ctx = context.of(memo)
    try:
        await apply_spec(ctx, body)
    except (kopf.PermanentError, kopf.TemporaryError):
        raise
    except (psycopg.OperationalError, connecting.DatabaseError) as error:
        await _say_database_unavailable(ctx, body, error, retry)
        raise retried(error) from error
    except UNREACHABLE as error:
        raise retried(error) from error
    except psycopg.errors.UniqueViolation as error:
        if not holds_key(error):
            raise
        # A start or restart of a job whose key another unfinished job took meanwhile: it waits
        # until that one finishes and frees the key.
        raise kopf.TemporaryError(
            f"uniqueKey held by another unfinished job: {error}", delay=LIMIT_RETRY
        ) from error
    except Exception as error:
        if connecting.is_outage(error):
            # A read-only window or a server shutting down is an outage, not a bad spec: retried
            # for as long as it lasts, like a lost connection.
            await _say_database_unavailable(ctx, body, error, retry)
            raise retried(error) from error
        reason = f"{type(error).__name__}: {error}"
        if retry < UNEXPECTED_ERROR_RETRIES:
            raise kopf.TemporaryError(reason, delay=RETRY_BACKOFF) from error
        logger.exception("PgJob %s failed %d times", _name(body), retry + 1)
        await _refuse(ctx, body, f"the operator failed to apply it: {reason}")


def retried(outage: Exception) -> kopf.TemporaryError:
    """An outage as kopf should see it: retried for as long as it lasts, one line per try (kopf
    logs any other exception with its traceback, one per try: dozens in a failover)."""
    return kopf.TemporaryError(f"database or API server unavailable: {outage}", delay=RETRY_BACKOFF)


async def apply_spec(ctx: context.Context, body: Mapping[str, Any]) -> None:
    """Make the PgJob's row match its spec (create it when missing); idempotent."""
    try:
        wanted = resource_job(body)
    except (InvalidJob, ValueError) as error:
        await _refuse(ctx, body, str(error))
        return
    generation = int(body["metadata"].get("generation", 1))
    async with ctx.database.connection() as conn:
        if run_is_over(body) and await resources.get_state(conn, wanted.uid) is None:
            await _report_row_missing(ctx, body)
            return
        try:
            upserted = await _upsert(ctx, conn, wanted, generation)
        except InvalidJob as error:  # e.g. args over the size limit the API server cannot check
            await _refuse(ctx, body, str(error))
            return
        except policy.Refused as error:
            await _refuse(ctx, body, str(error), POLICY_REASON)
            return
        except psycopg.errors.UniqueViolation as error:
            if not holds_key(error):
                raise
            await _refuse(ctx, body, await _holder_text(conn, wanted), DUPLICATE_REASON)
            return
        if upserted is None:
            # Another replica handled its deletion while this one read it: nothing left to do.
            logger.info("PgJob %s was deleted meanwhile: no row made", _name(body))
            return
        job_id, created = upserted
        # A new row already has the spec's stopped state, restart count and generation: one
        # round trip for a new PgJob. An existing one gets the rest of the spec, then the
        # generation, so a status never claims a generation whose stop is not applied yet.
        if not created:
            await _apply_stopped(ctx, conn, job_id, wanted)
            await _apply_restarts(ctx, conn, job_id, wanted)
            await resources.observe_generation(conn, wanted.uid, generation)


#: Phases that record a run's outcome. Stopped is not one: it waits for a start (spec.stopped
#: false), and a Stopped PgJob given a new row stays stopped until then.
ENDED_PHASES = frozenset({JobState.COMPLETED.phase, JobState.FAILED.phase})


def run_is_over(body: Mapping[str, Any]) -> bool:
    """Whether the PgJob's status records the outcome of a row's run and the spec asks for no new one.

    Such a PgJob whose row is gone must not get a new row: that would run finished work again.
    """
    status = body.get("status") or {}
    restarts = int(body.get("spec", {}).get("restarts", 0))
    return (
        status.get("jobId") is not None
        and status.get("phase") in ENDED_PHASES
        and restarts <= int(status.get("restarts") or 0)
    )


async def _upsert(
    ctx: context.Context, conn: queries.Connection, wanted: ResourceJob, generation: int
) -> tuple[int, bool] | None:
    """`resources.upsert` within the namespace's policy: a new row must be allowed and fit.
    None: the PgJob's deletion has removed its row already.

    Without a rule for the namespace this is the upsert alone. With one, a PgJob that has no
    row yet is checked (queue, task, maxima, room under the limit of unfinished PgJobs) in
    the transaction that adds its row; a PgJob with a row is never refused afterwards (a
    stricter policy does not fail running jobs), but its row stays within the maxima.
    """
    rule = ctx.policy.rule_for(wanted.namespace)
    if rule.unrestricted:
        return await resources.upsert(conn, wanted, generation)
    async with conn.transaction():
        if await resources.get_state(conn, wanted.uid) is None:
            ctx.policy.check(wanted)
            if not wanted.stopped and not await _has_room(conn, rule, wanted.namespace):
                raise ctx.policy.refusal(
                    wanted.namespace,
                    f"has {rule.max_unfinished} unfinished PgJobs, its limit (maxUnfinished);"
                    " once fewer are Pending or Running, `kubectl pgjobs restart` submits it again",
                )
        return await resources.upsert(conn, ctx.policy.bounded(wanted), generation)


async def _has_room(conn: queries.Connection, rule: policy.Rule, namespace: str) -> bool:
    """Whether one more Pending job fits under the namespace's limit; in the caller's
    transaction, which holds the namespace's lock from here until it adds the row."""
    if rule.max_unfinished is None:
        return True
    unfinished = await resources.count_unfinished_locked(conn, namespace, rule.max_unfinished)
    return unfinished < rule.max_unfinished


#: How often a start or restart held back by the limit of unfinished PgJobs is tried again.
LIMIT_RETRY = 5.0


async def _unfinish(
    ctx: context.Context,
    conn: queries.Connection,
    wanted: ResourceJob,
    action: str,
    run: Callable[[], Awaitable[object]],
) -> None:
    """Run `run()`, which makes a finished or Stopped job Pending, when the limit leaves room.

    At the limit the start or restart waits (the handler tries again) rather than failing:
    the PgJob has a row and a status the sync keeps, and only its spec asks for more work.
    """
    rule = ctx.policy.rule_for(wanted.namespace)
    if rule.max_unfinished is None:
        await run()
        return
    async with conn.transaction():
        if not await _has_room(conn, rule, wanted.namespace):
            raise kopf.TemporaryError(
                f"namespace {wanted.namespace!r} has {rule.max_unfinished} unfinished PgJobs, its"
                f" limit (maxUnfinished): the {action} waits until one finishes",
                delay=LIMIT_RETRY,
            )
        await run()


async def _apply_stopped(
    ctx: context.Context, conn: queries.Connection, job_id: int, wanted: ResourceJob
) -> None:
    """spec.stopped is the truth: stop a Pending/Running job, start a Stopped one, or withdraw a stop."""
    if wanted.stopped:
        await jobs.stop(conn, job_id)  # no-op when already Stopped, finished, or asked to stop
    elif ctx.policy.rule_for(wanted.namespace).max_unfinished is None:
        await jobs.start(conn, job_id)  # no-op unless Stopped or asked to stop
    else:
        # Under a limit of unfinished PgJobs, a Stopped job starts only through the room check;
        # otherwise only a pending stop request is withdrawn, never a start (a job that turned
        # Stopped since the read must not slip past the limit).
        if not await jobs.withdraw_stop(conn, job_id) and await _is_stopped(conn, job_id):
            await _unfinish(ctx, conn, wanted, "start", lambda: jobs.start(conn, job_id))


async def _is_stopped(conn: queries.Connection, job_id: int) -> bool:
    row = await jobs.get(conn, job_id)
    return row is not None and row.state is JobState.STOPPED


async def _apply_restarts(
    ctx: context.Context, conn: queries.Connection, job_id: int, wanted: ResourceJob
) -> None:
    """A spec.restarts above the row's is a new run of a finished job, recorded either way."""
    row = await jobs.get(conn, job_id)
    if row is None or wanted.restarts <= row.restarts:
        return
    if row.state in FINISHED_STATES:
        await _unfinish(ctx, conn, wanted, "restart", lambda: jobs.restart(conn, job_id, wanted.restarts))
    else:
        # Restarting an unfinished job means nothing; remember the request so that it is not
        # acted on later, when the job finishes.
        await jobs.record_restarts(conn, job_id, wanted.restarts)


#: The reason of the Event that says why a PgJob was refused.
#: The database's unique index of unfinished jobs' keys (migration 0008).
UNIQUE_KEY_INDEX = "jobs_unique_key_idx"
#: A PgJob whose spec.uniqueKey an unfinished job of its queue holds: Failed with this reason
#: (condition and Event), and never run.
DUPLICATE_REASON = "Duplicate"


def holds_key(error: psycopg.errors.UniqueViolation) -> bool:
    """Whether the violation is of a unique key (not of the PgJob uid, say)."""
    return error.diag.constraint_name == UNIQUE_KEY_INDEX


async def _holder_text(conn: queries.Connection, wanted: ResourceJob) -> str:
    key = wanted.job.unique_key or ""
    holder = await jobs.holding_key(conn, wanted.job.queue, key)
    if holder is None:
        who = "a job that has finished since (apply it again to run it)"
    elif holder["resource_name"]:
        who = f"PgJob {holder['resource_namespace']}/{holder['resource_name']} (job {holder['id']})"
    else:
        who = f"job {holder['id']} (no PgJob: `pgjobs jobs`)"
    return f"uniqueKey {key!r} of queue {wanted.job.queue!r} is held by {who}; this PgJob does not run"


REFUSED_REASON = "InvalidSpec"
#: The reason of the Event of a PgJob the namespace's policy does not allow.
POLICY_REASON = "PolicyDenied"
#: How each reason's status message begins.
_REFUSAL_PREFIX = {
    REFUSED_REASON: "invalid PgJob",
    POLICY_REASON: "not allowed",
    DUPLICATE_REASON: "duplicate",
}


async def _refuse(
    ctx: context.Context, body: Mapping[str, Any], message: str, reason: str = REFUSED_REASON
) -> None:
    """A spec the queue cannot take: say so in the status and an Event instead of retrying for ever."""
    meta = body["metadata"]
    text = f"{_REFUSAL_PREFIX[reason]}: {message}"
    status: dict[str, Any] = {"phase": "Failed", "message": text, "progress": 0, "progressPercent": "0%"}
    if reason == DUPLICATE_REASON:
        status["conditions"] = [_true_condition(DUPLICATE_REASON, message, meta)]
    await ctx.kube.patch_status(meta["namespace"], meta["name"], status, meta.get("uid"))
    await _warn(ctx, body, reason, text)
    raise kopf.PermanentError(message)


async def _warn(ctx: context.Context, body: Mapping[str, Any], reason: str, text: str) -> None:
    """A Warning Event on the PgJob; best effort, its status says the same already."""
    meta = body["metadata"]
    involved = {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")}
    try:
        await ctx.kube.post_event(involved, "Warning", reason, text)
    except UNREACHABLE as error:
        logger.warning("event %s for %s not posted: %s", reason, _name(body), error)


async def _say_database_unavailable(
    ctx: context.Context, body: Mapping[str, Any], error: BaseException, retry: int
) -> None:
    """One Warning Event per outage and PgJob: on the first failure of a round of retries."""
    if retry == 0:
        await _warn(ctx, body, outages.DATABASE_UNAVAILABLE, outages.unavailable_text(error))


#: The condition (and Event reason) of a finished PgJob whose row is gone.
ROW_MISSING = "RowMissing"


async def _report_row_missing(ctx: context.Context, body: Mapping[str, Any]) -> None:
    """A finished PgJob whose row vanished (a restored backup, a lost dev database) keeps its
    phase and is not run again; a condition and an Event say so, once, and how to run it anew."""
    meta, status = body["metadata"], body["status"]
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != ROW_MISSING]
    if len(conditions) < len(status.get("conditions") or []):
        return  # reported already
    message = (
        f"job {status['jobId']}'s row is gone from the database (a restored backup, a lost database): "
        f"its {status['phase']} run is not repeated; `kubectl pgjobs restart {meta['name']} "
        f"-n {meta['namespace']}` runs it anew"
    )
    logger.warning("PgJob %s: %s", _name(body), message)
    patch = {"conditions": [*conditions, _true_condition(ROW_MISSING, message, meta)]}
    await ctx.kube.patch_status(meta["namespace"], meta["name"], patch, meta["uid"])
    await _warn(ctx, body, ROW_MISSING, message)


def _true_condition(kind: str, message: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """A condition the handler sets itself (no row to derive it from): True since now."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "type": kind, "status": "True", "reason": kind, "message": message,
        "lastTransitionTime": stamp, "observedGeneration": meta.get("generation", 1),
    }  # fmt: skip


def _name(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


@kopf.on.delete(*RESOURCE, registry=registry, backoff=RETRY_BACKOFF)
async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Stop a running job (bounded wait for its worker), then remove the row."""
    try:
        await _delete_row(context.of(memo), body["metadata"]["uid"])
    except UNREACHABLE as error:
        raise retried(error) from error


async def _delete_row(ctx: context.Context, uid: str) -> None:
    deadline = time.monotonic() + ctx.settings.delete_wait
    while True:
        async with ctx.database.connection() as conn:
            row = await resources.get_state(conn, uid)
            if row is None:
                return
            if row.state is not JobState.RUNNING or time.monotonic() >= deadline:
                # Past the deadline the row goes anyway: the worker's next fenced write fails
                # and it lets the job go.
                await jobs.delete_resource(conn, uid)
                return
            if not row.stop_requested:
                await jobs.stop(conn, row.id)
        await asyncio.sleep(0.2)
