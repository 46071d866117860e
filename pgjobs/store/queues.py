"""Queues shaped by PgQueue resources: the specs the operator copies in, and every queue's counts.

The claim reads the `pgjobs.queues` rows itself (`job_complete_and_claim`, migration 0010): a
paused queue offers no job, a capped one only while fewer than `max_running` of its jobs run,
a rate-limited one only while its bucket has a start (`max_per_second`, migration 0014).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable

from pgjobs.store.queries import QUERIES, Connection, fetch_all


@dataclasses.dataclass(frozen=True)
class QueueSpec:
    """What a PgQueue asks of its queue (`resource_uid`: the PgQueue's metadata.uid)."""

    name: str
    resource_uid: str
    paused: bool = False
    #: At most this many of the queue's jobs run at once; None: no cap.
    max_running: int | None = None
    #: At most this many of the queue's jobs start per second; None: no limit.
    max_per_second: float | None = None


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """A queue as `kubectl get pgqueues` shows it."""

    name: str
    pending: int
    running: int
    workers: int
    #: Since when the oldest due Pending job has waited (None: none is due).
    oldest_due_since: datetime.datetime | None
    paused: bool
    max_running: int | None
    max_per_second: float | None = None


async def apply(conn: Connection, spec: QueueSpec) -> None:
    """Write a PgQueue's spec (a no-op when the row says the same already)."""
    await conn.execute(QUERIES["queue_apply"], dataclasses.asdict(spec))


async def remove(conn: Connection, resource_uid: str) -> None:
    """Drop the row of the PgQueue with this uid (it was deleted)."""
    await conn.execute(QUERIES["queue_remove"], {"resource_uid": resource_uid})


async def remove_others(conn: Connection, resource_uids: Iterable[str]) -> list[str]:
    """Drop the rows of PgQueues not among `resource_uids`; returns their queue names."""
    rows = await fetch_all(conn, "queue_remove_others", {"resource_uids": list(resource_uids)})
    return [str(row["name"]) for row in rows]


async def list_stats(conn: Connection) -> list[QueueStats]:
    """Every queue with unfinished jobs, a live worker or a PgQueue, by name."""
    rows = await fetch_all(conn, "queue_list_stats", {})
    return [
        QueueStats(
            name=str(row["queue"]),
            pending=int(row["pending"]),
            running=int(row["running"]),
            workers=int(row["workers"]),
            oldest_due_since=row["oldest_due_since"],
            paused=bool(row["paused"]),
            max_running=None if row["max_running"] is None else int(row["max_running"]),
            max_per_second=None if row["max_per_second"] is None else float(row["max_per_second"]),
        )
        for row in rows
    ]
