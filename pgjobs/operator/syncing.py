"""Status sync (leader only): rows whose change count moved → PgJob status, within a write budget.

Each row carries `change_count` (bumped by every visible change) and `synced_count` (the count
last copied). A round reads rows where they differ, patches each PgJob's status through the
status subresource with the row as it is *now* (so many changes in between cost one write),
posts an Event per state transition, then records what it copied. A row changed meanwhile keeps
a differing count and is copied again next round: nothing is lost and nothing is watermarked.

Rows are read in fair turns (`Turns`): namespaces in turn, state changes before progress, and
each namespace's progress in a round over its rows, so that one tenant's flood of changing jobs
cannot hold back another's statuses (nor the TTL deletions that wait for a final status).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pgjobs.operator import context, kube, liveness, metrics
from pgjobs.states import JobState
from pgjobs.store import connecting, jobs, resources
from pgjobs.store.resources import SyncRow

logger = logging.getLogger(__name__)

#: Status writes in flight at once (each holds one of kube.CONNECTIONS).
CONCURRENCY = 16
#: Rows read ahead of the writers, which already hold their tokens: few, so that what is
#: written is fresh. The reader reads again when half of them are taken.
QUEUED = CONCURRENCY
#: Events waiting to be posted before new ones are dropped (with a warning).
EVENT_BACKLOG = 10_000
#: Events waiting (a second's worth at the default budget) beyond which new Normal ones are
#: skipped: under a burst the status already says Started/Completed, and those writes would
#: take the API server's time from the statuses. Warnings (Failed, Rescued) are still posted.
NORMAL_EVENT_BACKLOG = 50
#: A result larger than this (as JSON) is not copied: status is no place for data.
MAX_RESULT_BYTES = 4096
RESCUE_MESSAGE_PREFIX = "worker stopped heartbeating"
#: Namespaces whose place in the round of progress-only changes is remembered; beyond that the
#: least recently served are forgotten (they start their round again: no change is lost).
MAX_CURSORS = 10_000
#: status.syncedAt: fixed width, so that the CRD's rule orders it whether the API server
#: compares it as a timestamp or as a string.
SYNCED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: The condition of a pending job no live worker can run (`jobs.mark_no_worker`).
NO_WORKER_REASON = "NoWorkerForTask"

Json = dict[str, Any]


class TokenBucket:
    """At most `rate` takes per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError(f"the write budget must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self) -> float:
        """Take a token and return 0, or return the seconds until one is available."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def take(self) -> None:
        async with self._lock:  # first come, first served
            while (wait := self.try_take()) > 0:
                await asyncio.sleep(wait)


def _stamp(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def small_result(result: Any) -> Json | None:
    """The result as status.result (an object); a large one is replaced by a note."""
    if result is None:
        return None
    value = result if isinstance(result, dict) else {"value": result}
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_RESULT_BYTES:
        return {"truncated": True, "bytes": size}
    return value


def message_of(row: SyncRow, now: datetime.datetime) -> str:
    """The row's message; a job waiting for a retry also says when the retry comes."""
    message = row.message or ""
    if row.state is JobState.PENDING and row.attempt > 0 and row.run_after > now:
        retry = f"attempt {row.attempt + 1}/{row.max_attempts} at {_stamp(row.run_after)}"
        message = f"{message}; next {retry}" if message else f"next {retry}"
    if row.state is JobState.PENDING and row.no_worker_since is not None:
        message = f"{message}; {waiting_for_worker(row)}" if message else waiting_for_worker(row)
    return message


def waiting_for_worker(row: SyncRow) -> str:
    return f"no live worker runs task {row.task!r} on queue {row.queue!r}"


def _condition(kind: str, status: str, reason: str, message: str, since: Any, row: SyncRow) -> Json:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _stamp(since or row.created_at),
        "observedGeneration": row.observed_generation or 0,
    }


def conditions_of(row: SyncRow) -> list[Json]:
    """`Running` and `Succeeded` per the API conventions, derived from the row alone.

    The transition times come from the row's timestamps, so every replica derives the same
    conditions without reading the object back.
    """
    message = row.message or ""
    if row.state is JobState.RUNNING:
        running = _condition(
            "Running",
            "True",
            "Started",
            f"attempt {row.attempt}/{row.max_attempts}",
            row.started_at,
            row,
        )
    else:
        since = row.finished_at if row.state.is_finished else row.created_at
        running = _condition("Running", "False", row.state.phase, message, since, row)
    if row.state is JobState.COMPLETED:
        succeeded = _condition("Succeeded", "True", "Completed", message, row.finished_at, row)
    elif row.state.is_finished:
        succeeded = _condition("Succeeded", "False", row.state.phase, message, row.finished_at, row)
    else:
        since = row.started_at if row.state is JobState.RUNNING else row.created_at
        succeeded = _condition("Succeeded", "Unknown", row.state.phase, message, since, row)
    conditions = [running, succeeded]
    if scheduled(row):
        when = _stamp(row.run_after)
        conditions.append(
            _condition("Scheduled", "True", "RunAt", f"not claimed before {when}", row.created_at, row)
        )
    if row.state is JobState.PENDING and row.no_worker_since is not None:
        conditions.append(
            _condition(
                "Runnable", "False", NO_WORKER_REASON, no_worker_message(row), row.no_worker_since, row
            )
        )
    return conditions


#: A first run due this much after creation was scheduled (spec.runAt), not merely enqueued.
SCHEDULED_AFTER = datetime.timedelta(seconds=1)


def scheduled(row: SyncRow) -> bool:
    """Whether the job waits for its spec.runAt: its first attempt is due well after its creation.
    From the row alone (like every condition), so it stays True until the job starts."""
    return (
        row.state is JobState.PENDING
        and row.attempt == 0
        and row.run_after - row.created_at > SCHEDULED_AFTER
    )


def no_worker_message(row: SyncRow) -> str:
    """What the Runnable=False condition says: what is missing, and what to do about it."""
    return (
        f"{waiting_for_worker(row)}; the job waits (it is not failed): start workers that "
        f"register the task and serve the queue (pgjobs worker --tasks MODULE --queue {row.queue}), "
        "or check the task name; `pgjobs workers --json` lists each worker's queues and tasks"
    )


def status_of(row: SyncRow, now: datetime.datetime) -> Json:
    """The PgJob status for a row; None values remove fields in the merge patch."""
    status: Json = {
        "phase": row.state.phase,
        "progress": row.progress,
        "progressPercent": f"{row.progress}%",
        "message": message_of(row, now),
        "worker": row.worker_name or "",
        "attempts": row.attempt,
        "restarts": row.restarts,
        "jobId": row.id,
        "startedAt": _stamp(row.started_at),
        "finishedAt": _stamp(row.finished_at),
        "result": small_result(row.result),
        "conditions": conditions_of(row),
    }
    if row.observed_generation is not None:
        status["observedGeneration"] = row.observed_generation
    return status


def transitions(row: SyncRow) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events between what was copied last and the row now.

    Progress is not a transition. Changes between two rounds are coalesced like the status:
    an attempt that started and ended in between gets only its end (whose message names the
    attempt and worker), which keeps a short job at one Event, not two.
    """
    before, now = row.synced_state, row.state
    where = f" on {row.worker_name}" if row.worker_name else ""
    attempt = f"attempt {row.attempt}/{row.max_attempts}{where}"
    found: list[tuple[str, str, str]] = []
    if now is JobState.RUNNING and (before is not JobState.RUNNING or row.attempt != row.synced_attempt):
        found.append(("Normal", "Started", attempt))
    if now.is_finished and before is not now:
        kind = "Warning" if now is JobState.FAILED else "Normal"
        detail = f": {row.message}" if row.message else ""
        found.append((kind, now.phase, f"{attempt}{detail}" if row.attempt else row.message or now.phase))
    if now is JobState.PENDING and before is JobState.RUNNING:
        message = row.message or "back in the queue"
        if message.startswith(RESCUE_MESSAGE_PREFIX):
            found.append(("Warning", "Rescued", message))
        else:
            found.append(("Normal", "Requeued", message))
    return found


def observe_latencies(row: SyncRow, now: datetime.datetime) -> None:
    before = row.synced_state
    if row.state is JobState.RUNNING and before is not JobState.RUNNING and row.started_at:
        if row.attempt == 1:
            latency = (row.started_at - row.created_at).total_seconds()
            metrics.PICKUP_LATENCY.labels(metrics.queue_label(row.queue)).observe(latency)
        metrics.SYNC_LAG.observe(max(0.0, (now - row.started_at).total_seconds()))
    if row.state.is_finished and before is not row.state and row.finished_at:
        metrics.SYNC_LAG.observe(max(0.0, (now - row.finished_at).total_seconds()))
        if row.started_at and row.state is not JobState.STOPPED:
            run_time = (row.finished_at - row.started_at).total_seconds()
            metrics.RUN_TIME.labels(row.state.phase, metrics.queue_label(row.queue)).observe(run_time)


def progress_only(row: SyncRow) -> bool:
    """Whether the row's change leaves its state and attempt as copied last (progress, message,
    generation, ...): such rows come after the state changes of their namespace. The same test
    as the CASE in `resource_list_unsynced`."""
    return row.state is row.synced_state and row.attempt == row.synced_attempt


class Turns:
    """Where the next read goes on: fair turns between namespaces, and within each namespace a
    round over its rows with progress-only changes.

    The read (`resource_list_unsynced`) takes namespaces in order from the one after
    `namespace`, one row per namespace and turn, so a namespace with thousands of changing rows
    delays another namespace's row by one write per namespace with changes. Within a namespace,
    state changes come first and progress-only ones go on after the row in `after_ids`, so that
    every running job's progress is copied in turn, not only the oldest ones'.
    """

    def __init__(self, max_cursors: int = MAX_CURSORS) -> None:
        #: The namespace served last ("": none yet, start from the first).
        self.namespace = ""
        #: Per namespace, the id of the progress-only row taken last (most recent last).
        self.after_ids: dict[str, int] = {}
        self._max_cursors = max_cursors

    def advance(self, rows: list[SyncRow]) -> None:
        """Take note of the rows one read returned, in the order it returned them."""
        if not rows:
            return
        self.namespace = rows[-1].resource_namespace
        for row in rows:
            if progress_only(row):
                self.after_ids.pop(row.resource_namespace, None)
                self.after_ids[row.resource_namespace] = row.id
        while len(self.after_ids) > self._max_cursors:
            del self.after_ids[next(iter(self.after_ids))]


class Syncer:
    """A reader keeps a short queue of rows to copy; `CONCURRENCY` writers copy them within the budget.

    Rows are not read in large rounds that all must finish before the next read: a row that
    changed during such a round waited for the whole round (seconds under a burst). The queue
    is kept short (`QUEUED` rows) so that what is written is fresh, and a job that went
    Pending → Running → Completed while waiting costs one write, not three; one read and one
    record of what was copied still serve many writes.
    """

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        # A burst allowance: 1,000 PgJobs applied at once need a status each, faster than any
        # polite steady rate; the rate still bounds what the operator writes over time.
        self.bucket = TokenBucket(
            ctx.settings.status_writes_per_second,
            max(ctx.settings.status_writes_per_second, ctx.settings.status_write_burst),
        )
        # Events have a budget and a queue of their own: a status must not wait behind the
        # Events of other jobs, and under a burst the statuses are what users look at.
        self.event_bucket = TokenBucket(ctx.settings.status_writes_per_second)
        self.events: asyncio.Queue[tuple[SyncRow, str, str, str]] = asyncio.Queue(EVENT_BACKLOG)
        #: Rows to copy, with when they were read (status.syncedAt).
        self.queue: asyncio.Queue[tuple[SyncRow, datetime.datetime]] = asyncio.Queue()
        #: Ids of rows queued or being written: not read again until their copy is recorded.
        self._busy: set[int] = set()
        #: Rows written whose copy is not recorded in the database yet.
        self._copied: list[SyncRow] = []
        #: Set by a writer when the queue runs low: the reader reads again without waiting.
        self._low = asyncio.Event()
        #: Where the next read goes on, so that namespaces and rows take turns.
        self.turns = Turns()

    async def run(self) -> None:
        """Read and write until cancelled (when this replica stops leading)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._post_events(), name="pgjobs-events")
            for number in range(CONCURRENCY):
                group.create_task(self._write(), name=f"pgjobs-status-writer-{number}")
            group.create_task(self._read(), name="pgjobs-status-reader")
            group.create_task(self._watch_runnable(), name="pgjobs-no-worker")

    async def _watch_runnable(self) -> None:
        """Mark pending jobs no live worker can run, and clear marks a worker made stale; each
        change bumps the row, so the reader copies the condition like any other change."""
        settings = self.ctx.settings
        # A job is shown at most a quarter of the delay late, and looked for no more often than
        # the maintenance rounds run (a look costs an index probe per (queue, task) pending).
        interval = max(0.1, min(settings.maintenance_interval, settings.no_worker_after / 4))
        while True:
            self.ctx.fence()  # a leader past its lease marks nothing
            try:
                async with self.ctx.sync_database.connection() as conn:
                    marked, cleared = await jobs.mark_no_worker(conn, settings.no_worker_after)
            except Exception as error:  # the database is away: the next look tries again
                # An outage is one line; anything else is unexpected: the traceback says where.
                outage = connecting.is_outage(error)
                logger.warning("look for jobs no worker can run failed: %s", error, exc_info=not outage)
            else:
                if marked or cleared:
                    logger.info("jobs no live worker can run: %d newly, %d no longer", marked, cleared)
                    self._low.set()
            context.stop_if_cancelled()  # lost on the way? (see `_read`)
            await asyncio.sleep(interval)

    async def _read(self) -> None:
        while True:
            self.ctx.went_round(liveness.STATUS_SYNC)
            try:
                full = await self.sync_once()
            except Exception as error:  # the database is away: try again after a pause
                context.stop_if_cancelled()
                outage = connecting.is_outage(error)
                logger.warning("status sync round failed: %s", error, exc_info=not outage)
                full = False
            # A cancellation can also be lost on the way, the round returning as if none came
            # (psycopg_pool waits for a connection with asyncio.wait_for, which before Python
            # 3.12 returns what arrives with a cancellation and drops it): seen in a failover,
            # where the reader then waited for writers already gone and held up the step-down.
            context.stop_if_cancelled()
            self._low.clear()
            if full:  # more rows wait: read again once the writers have taken most of these
                await self._low.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.ctx.settings.sync_interval):
                        await self._low.wait()

    async def sync_once(self) -> bool:
        """Record what was copied, then queue rows to copy; True when it found as many as it wanted."""
        await self._record_copied()
        wanted = QUEUED - self.queue.qsize()
        if wanted <= 0:
            return True
        async with self.ctx.sync_database.connection() as conn:
            read_at = datetime.datetime.now(datetime.UTC)
            rows = await resources.list_unsynced(
                conn, wanted, sorted(self._busy), self.turns.namespace, self.turns.after_ids
            )
        self.turns.advance(rows)
        for row in rows:
            self._busy.add(row.id)
            self.queue.put_nowait((row, read_at))
        return len(rows) == wanted

    async def _record_copied(self) -> None:
        if not self._copied:
            return
        copied, self._copied = self._copied, []
        try:
            async with self.ctx.sync_database.connection() as conn:
                await resources.mark_synced(conn, copied)
        except BaseException:
            self._copied = copied + self._copied  # recorded next time; meanwhile not read again
            raise
        self._busy.difference_update(row.id for row in copied)

    async def _write(self) -> None:
        while True:
            # The token first: a row must not go stale in a writer's hands while it waits for
            # one (a job that finishes meanwhile would cost a second write).
            await self.bucket.take()
            row, read_at = await self.queue.get()
            if self.queue.qsize() <= QUEUED // 2:
                self._low.set()
            copied = await self._copy(row, read_at)
            context.stop_if_cancelled()
            if copied:
                self._copied.append(row)  # _busy until recorded, so it is not read again meanwhile
            else:
                self._busy.discard(row.id)  # read again, and retried, in a later round

    async def _copy(self, row: SyncRow, read_at: datetime.datetime) -> bool:
        """Write one status (and queue its Events); True when the row counts as copied."""
        self.ctx.fence()  # a leader frozen since it read the row must not write it now
        now = datetime.datetime.now(datetime.UTC)
        # The read's time orders writes: the API server refuses one older than the status it
        # stores (the CRD's rule), so a write an older leader sent before this one but that
        # arrives after it (the API server slow, the request already sent) cannot undo it.
        status = status_of(row, now) | {"syncedAt": read_at.strftime(SYNCED_AT_FORMAT)}
        try:
            found = await self.ctx.kube.patch_status(
                row.resource_namespace, row.resource_name, status, row.resource_uid
            )
        except kube.StaleStatus:
            # A later read was copied already (another replica's clock ahead of this one's):
            # read again and copy in a later round, once this read is the newest.
            metrics.STATUS_WRITES.labels("stale").inc()
            return False
        except Exception as error:
            metrics.STATUS_WRITES.labels("error").inc()
            logger.warning(
                "status of %s/%s not written: %s", row.resource_namespace, row.resource_name, error
            )
            return False
        metrics.STATUS_WRITES.labels("written" if found else "gone").inc()
        logger.debug(
            "status of %s/%s: job %d %s, change %d, read at %s: %s",
            row.resource_namespace, row.resource_name, row.id, row.state.phase, row.change_count,
            status["syncedAt"], "written" if found else "gone",
        )  # fmt: skip
        if not found:
            return True  # the PgJob is gone; its row is removed by the finalizer or clean-up
        observe_latencies(row, now)
        for kind, reason, message in transitions(row):
            self._queue_event(row, kind, reason, message)
        return True

    def _queue_event(self, row: SyncRow, kind: str, reason: str, message: str) -> None:
        if kind == "Normal" and self.events.qsize() >= NORMAL_EVENT_BACKLOG:
            metrics.EVENTS_SKIPPED.labels(reason).inc()
            return
        try:
            self.events.put_nowait((row, kind, reason, message))
        except asyncio.QueueFull:  # Events are best effort: the status already says it
            logger.warning(
                "event %s for %s dropped: %d Events wait already", reason, row.resource_name, EVENT_BACKLOG
            )

    async def _post_events(self) -> None:
        while True:
            row, kind, reason, message = await self.events.get()
            await self._post_event(row, kind, reason, message)
            context.stop_if_cancelled()

    async def _post_event(self, row: SyncRow, kind: str, reason: str, message: str) -> None:
        await self.event_bucket.take()
        involved = {"name": row.resource_name, "namespace": row.resource_namespace, "uid": row.resource_uid}
        try:
            await self.ctx.kube.post_event(involved, kind, reason, message)
        except Exception as error:  # Events are best effort: the status already says it
            logger.warning("event %s for %s not posted: %s", reason, row.resource_name, error)
            return
        metrics.EVENTS.labels(reason).inc()
