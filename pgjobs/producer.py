"""The producer API: enqueue jobs from application code, inside the application's transaction.

    with psycopg.connect(url) as conn:                  # the application's own connection
        order = conn.execute("INSERT INTO orders ... RETURNING id").fetchone()[0]
        pgjobs.enqueue(conn, "send-confirmation", args={"order": order})
    # committed together: a rollback leaves neither the order nor the job, and workers see
    # (and are woken for) the job only once the transaction commits.

The job is checked before anything is written (a bad task name, args that are not a JSON object,
nested too deep or over 64 KiB, an unknown priority: `pgjobs.InvalidJob`). Jobs written this way
have no PgJob; `pgjobs jobs` lists them and the leader deletes them once they are finished and
past the operator's --finished-retention. The login needs the privileges of the operator's
group role (or owns the schema): docs/operations.md, "Database roles".
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from pgjobs.states import Priority
from pgjobs.store import jobs
from pgjobs.store.records import InvalidJob, NewJob

__all__ = ["InvalidJob", "enqueue", "enqueue_async", "enqueue_many"]


def new_job(
    task: str,
    *,
    args: Mapping[str, Any] | None = None,
    queue: str = NewJob.queue,
    priority: Priority | str = NewJob.priority,
    run_at: datetime.datetime | None = None,
    max_attempts: int = NewJob.max_attempts,
    backoff_seconds: int = NewJob.backoff_seconds,
    timeout: int | None = None,
    unique_key: str | None = None,
) -> NewJob:
    """The job the keyword arguments describe (checked when it is written)."""
    try:
        level = priority if isinstance(priority, Priority) else Priority.parse(str(priority))
    except ValueError as error:
        raise InvalidJob(str(error)) from None
    return NewJob(
        task=task,
        args={} if args is None else args,
        priority=level,
        queue=queue,
        max_attempts=max_attempts,
        backoff_seconds=backoff_seconds,
        timeout_seconds=timeout,
        run_at=run_at,
        unique_key=unique_key,
    )


def enqueue(conn: psycopg.Connection[Any], task: str, **options: Any) -> int:
    """Write one job inside `conn`'s current transaction; its id (with `unique_key`, the id of the
    unfinished job of the queue that holds the key, if one does). Options: see `new_job`."""
    return jobs.enqueue_in(conn, new_job(task, **options))


async def enqueue_async(conn: psycopg.AsyncConnection[Any], task: str, **options: Any) -> int:
    """`enqueue` for an asyncio connection."""
    return await jobs.enqueue_in_async(conn, new_job(task, **options))


def enqueue_many(
    conn: psycopg.Connection[Any], task: str, args: Iterable[Mapping[str, Any]], **options: Any
) -> list[int]:
    """One job of `task` per args, all in `conn`'s current transaction; their ids. Every job is
    checked before the first is written."""
    batch = [new_job(task, args=one, **options) for one in args]
    for job in batch:
        jobs.check(job)
    return [jobs.enqueue_in(conn, job) for job in batch]
