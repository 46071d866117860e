"""Jobs: enqueue, claim, finish, stop/start/restart/delete, rescue, and the status-sync reads.

Every function takes an autocommit connection and runs one named query (one round trip), but
`enqueue_in` and `enqueue_in_async`: they write on an application's connection, inside its
transaction (the producer API, pgjobs.producer).
Functions a worker calls on a job it holds are fenced by the claim's lease: they return False
(or None) when the job is no longer the worker's, and the worker must then let it go.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgjobs.states import JobState
from pgjobs.store import hotpath, validation
from pgjobs.store.queries import QUERIES, Connection, fetch_all, fetch_one
from pgjobs.store.records import ClaimAnswer, ClaimedJob, Job, NewJob, RescuedJob, Row, storable_text


async def enqueue(conn: Connection, job: NewJob, count: int = 1) -> list[int]:
    """Insert `count` copies of a job in one statement; returns the new ids. A job whose unique
    key an unfinished job of its queue holds is not written: the holder's id comes back."""
    params = _insert_parameters(job, count)
    for _ in range(KEY_ATTEMPTS):
        rows = await fetch_all(conn, "job_insert", params)
        if rows or job.unique_key is None:
            return [int(row["id"]) for row in rows]
        holder = await holding_key(conn, job.queue, job.unique_key)
        if holder is not None:
            return [int(holder["id"])]
    raise validation.InvalidJob(f"unique key {job.unique_key!r} kept changing hands, try again")


#: Inserts of a keyed job: the holder can finish between a refused insert and the look for it.
KEY_ATTEMPTS = 3


async def holding_key(conn: Connection, queue: str, unique_key: str) -> Row | None:
    """The unfinished job holding `unique_key` in `queue` (id, resource_namespace, resource_name)."""
    return await fetch_one(conn, "job_holding_key", {"queue": queue, "unique_key": unique_key})


def check(job: NewJob) -> None:
    """Raise InvalidJob for a job that cannot be stored (before anything is written)."""
    validation.check_new_job(job)
    job.args_json()


def _insert_parameters(job: NewJob, count: int) -> dict[str, Any]:
    """The checked parameters of job_insert: a bad job raises before anything is written."""
    validation.check_new_job(job)
    if count < 1:
        raise validation.InvalidJob(f"count must be at least 1, got {count}")
    if count > 1 and job.unique_key is not None:
        raise validation.InvalidJob("a unique key names one job: enqueue it once, not --count times")
    return {**job.parameters(), "count": count}


def enqueue_in(conn: psycopg.Connection[Any], job: NewJob) -> int:
    """Insert a job on the caller's connection, inside its current transaction (any row factory);
    its id, or the id of the unfinished job that holds its unique key."""
    params = _insert_parameters(job, 1)
    with conn.cursor(row_factory=dict_row) as cursor:
        for _ in range(KEY_ATTEMPTS):
            rows = cursor.execute(QUERIES["job_insert"], params).fetchall()
            if not rows and job.unique_key is not None:
                rows = cursor.execute(QUERIES["job_holding_key"], params).fetchall()
            if rows:
                return int(rows[0]["id"])
    raise validation.InvalidJob(f"unique key {job.unique_key!r} kept changing hands, try again")


async def enqueue_in_async(conn: psycopg.AsyncConnection[Any], job: NewJob) -> int:
    """`enqueue_in` for an asyncio connection."""
    params = _insert_parameters(job, 1)
    async with conn.cursor(row_factory=dict_row) as cursor:
        for _ in range(KEY_ATTEMPTS):
            rows = await (await cursor.execute(QUERIES["job_insert"], params)).fetchall()
            if not rows and job.unique_key is not None:
                rows = await (await cursor.execute(QUERIES["job_holding_key"], params)).fetchall()
            if rows:
                return int(rows[0]["id"])
    raise validation.InvalidJob(f"unique key {job.unique_key!r} kept changing hands, try again")


async def claim(
    conn: Connection,
    worker_id: uuid.UUID,
    queues: Sequence[str],
    *,
    was_idle: bool | None = False,
    tasks: Sequence[str] | None = None,
) -> ClaimedJob | None:
    """Claim the next runnable job of `queues` whose task is one of `tasks` (None: any), None when
    there is none. The worker's count of idle slots follows: one fewer when an idle slot
    (`was_idle`) found work, one more when a busy one found none (`was_idle` None: untouched)."""
    answer = await claim_or_wait(conn, worker_id, queues, was_idle=was_idle, tasks=tasks)
    return answer.job


async def claim_or_wait(
    conn: Connection,
    worker_id: uuid.UUID,
    queues: Sequence[str],
    *,
    was_idle: bool | None = False,
    tasks: Sequence[str] | None = None,
) -> ClaimAnswer:
    """`claim`, answering also, when it found no job, in how many seconds a rate-limited queue of
    `queues` has a start again (`ClaimAnswer.throttled_for`)."""
    return await hotpath.complete_and_claim(conn, None, None, None, None, worker_id, queues, was_idle, tasks)


async def complete_and_claim(
    conn: Connection,
    job: ClaimedJob,
    result: Any,
    message: str | None,
    worker_id: uuid.UUID,
    queues: Sequence[str],
    *,
    was_idle: bool | None = False,
    tasks: Sequence[str] | None = None,
) -> ClaimAnswer:
    """Complete a held job and claim the next in one round trip. The next job, the idle count
    and `throttled_for` are as in `claim_or_wait` (a slot holding a job is busy: `was_idle`
    False, or None)."""
    return await hotpath.complete_and_claim(
        conn, job.id, job.lease, result, storable_text(message), worker_id, queues, was_idle, tasks
    )


async def mark_no_worker(conn: Connection, after_seconds: float) -> tuple[int, int]:
    """Mark the pending jobs no worker can run (waiting `after_seconds` without one), and clear
    the mark of jobs a live worker can run again; returns (marked, cleared)."""
    row = await fetch_one(conn, "job_mark_no_worker", {"after_seconds": after_seconds})
    assert row is not None
    return int(row["marked"]), int(row["cleared"])


async def announce(conn: Connection) -> None:
    """Wake every worker (new-job notification with no worker named)."""
    await conn.execute(QUERIES["job_announce"])


async def complete(conn: Connection, job: ClaimedJob, result: Any, message: str | None = None) -> bool:
    params = {
        "job_id": job.id,
        "lease": job.lease,
        "result": _jsonb(result),
        "message": storable_text(message),
    }
    return await fetch_one(conn, "job_complete", params) is not None


async def fail(
    conn: Connection, job: ClaimedJob, message: str, *, retry_in: float | None, stopped_message: str
) -> JobState | None:
    """Record a failed attempt: Pending again after `retry_in` seconds, or Failed when None;
    Stopped (with `stopped_message`) when a stop was requested meanwhile. None: not held."""
    params = {
        "job_id": job.id,
        "lease": job.lease,
        "message": storable_text(message),
        "stopped_message": storable_text(stopped_message),
        "retry_in": retry_in,
    }
    row = await fetch_one(conn, "job_fail", params)
    return JobState(row["state"]) if row else None


async def acknowledge_stop(conn: Connection, job: ClaimedJob, message: str) -> bool:
    params = {"job_id": job.id, "lease": job.lease, "message": storable_text(message)}
    return await fetch_one(conn, "job_stop_acknowledge", params) is not None


async def release(
    conn: Connection, worker_id: uuid.UUID, leases: Iterable[int] | None, message: str
) -> dict[int, JobState]:
    """Hand jobs this worker holds (those `leases`; None: all) back to Pending without charging
    their attempt (Stopped when a stop was requested); returns {job id: state} of those released."""
    params = {
        "worker_id": worker_id,
        "leases": None if leases is None else list(leases),
        "message": storable_text(message),
    }
    return {int(row["id"]): JobState(row["state"]) for row in await fetch_all(conn, "job_release", params)}


async def report_progress(
    conn: Connection, job: ClaimedJob, progress: int, message: str | None = None
) -> bool | None:
    """Store progress; returns whether a stop was requested, or None when the job is lost."""
    row = await fetch_one(
        conn,
        "job_progress",
        {"job_id": job.id, "lease": job.lease, "progress": progress, "message": storable_text(message)},
    )
    return bool(row["stop_requested"]) if row else None


async def stop(conn: Connection, job_id: int) -> bool:
    """Stop a Pending job at once, or ask the worker of a Running one to stop it."""
    return await fetch_one(conn, "job_stop", {"job_id": job_id}) is not None


async def start(conn: Connection, job_id: int) -> bool:
    """Start a Stopped job again, or withdraw a stop request its worker has not acted on."""
    if await fetch_one(conn, "job_start", {"job_id": job_id}) is not None:
        return True
    return await fetch_one(conn, "job_unstop", {"job_id": job_id}) is not None


async def withdraw_stop(conn: Connection, job_id: int) -> bool:
    """Withdraw a stop request a Running job's worker has not acted on; never starts a Stopped job."""
    return await fetch_one(conn, "job_unstop", {"job_id": job_id}) is not None


async def restart(conn: Connection, job_id: int, restarts: int | None = None) -> bool:
    """Run a finished job again; `restarts` records which restart request this answers."""
    return await fetch_one(conn, "job_restart", {"job_id": job_id, "restarts": restarts}) is not None


async def record_restarts(conn: Connection, job_id: int, restarts: int) -> None:
    await fetch_one(conn, "job_record_restarts", {"job_id": job_id, "restarts": restarts})


async def delete(conn: Connection, job_id: int, *, force: bool = False) -> bool:
    """Delete a job that is not running (or, with force, any job: its worker will let it go)."""
    return await fetch_one(conn, "job_delete", {"job_id": job_id, "force": force}) is not None


async def delete_resource(conn: Connection, resource_uid: str) -> bool:
    return await fetch_one(conn, "job_delete_resource", {"resource_uid": resource_uid}) is not None


async def delete_resources(conn: Connection, resource_uids: Iterable[str]) -> int:
    return len(await fetch_all(conn, "job_delete_resources", {"resource_uids": list(resource_uids)}))


async def get(conn: Connection, job_id: int) -> Job | None:
    row = await fetch_one(conn, "job_get", {"job_id": job_id})
    return Job.from_row(row) if row else None


async def list_jobs(
    conn: Connection, states: Sequence[JobState] | None = None, limit: int = 100
) -> list[Job]:
    params = {"states": [state.value for state in states] if states else None, "limit": limit}
    return [Job.from_row(row) for row in await fetch_all(conn, "job_list", params)]


async def page(conn: Connection, params: Mapping[str, Any]) -> list[Row]:
    """A page of jobs matching a filter, by keyset: `params` has namespace, queue, task, state,
    args_like, since (each None to leave it out), cursor (an id; None: from the newest) and
    limit. Newest first, older than the cursor."""
    return await fetch_all(conn, "job_page_older", params)


async def list_running(conn: Connection) -> list[Row]:
    """Every Running job: id, task, queue, progress, worker_id and its PgJob's namespace and name."""
    return await fetch_all(conn, "job_list_running", {})


async def list_expired(conn: Connection, limit: int = 100) -> list[Row]:
    return await fetch_all(conn, "job_list_expired", {"limit": limit})


async def count_by_state(conn: Connection) -> list[Row]:
    return await fetch_all(conn, "job_count_by_state", {})


async def count_backlog(conn: Connection) -> dict[str, int]:
    """Queue → jobs Pending and due, or Running."""
    return {str(row["queue"]): int(row["jobs"]) for row in await fetch_all(conn, "job_count_backlog", {})}


async def prune_finished(conn: Connection, retention_seconds: float, limit: int) -> int:
    """Delete up to `limit` finished jobs without a PgJob older than the retention; how many."""
    rows = await fetch_all(
        conn, "job_prune_finished", {"retention_seconds": retention_seconds, "limit": limit}
    )
    return len(rows)


async def oldest_due_by_queue(conn: Connection) -> dict[str, float]:
    """Queue → seconds its oldest due Pending job has waited."""
    rows = await fetch_all(conn, "job_oldest_due_by_queue", {})
    return {str(row["queue"]): float(row["seconds"]) for row in rows}


async def rescue(conn: Connection, stall_seconds: float) -> list[RescuedJob]:
    """Recover Running jobs whose worker went silent; safe to run anywhere, any time."""
    rows = await fetch_all(conn, "job_rescue_many", {"stall_seconds": stall_seconds})
    return [
        RescuedJob(int(row["id"]), JobState(row["state"]), int(row["attempt"]), int(row["max_attempts"]))
        for row in rows
    ]


async def state_labels(conn: Connection) -> list[str]:
    return [str(row["enumlabel"]) for row in await fetch_all(conn, "schema_state_labels", {})]


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
