"""Workers: registration with a fresh id per process, heartbeats, listing and pruning."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from psycopg import sql

from pgjobs.states import STALL_TIMEOUT
from pgjobs.store.queries import QUERIES, Connection
from pgjobs.store.records import Heartbeat, Worker

#: New jobs for any worker (a batch, a retry, a job no idle worker was found for).
JOBS_CHANNEL = "pgjobs_jobs"
#: Stop requests, the payload naming the worker whose job it is.
CONTROL_CHANNEL = "pgjobs_control"


def wake_channel(worker_id: uuid.UUID) -> str:
    """The channel on which the enqueue trigger wakes this one worker (migration 0004)."""
    return f"pgjobs_wake_{worker_id}"


async def listen(conn: Connection, worker_id: uuid.UUID) -> None:
    """Subscribe `conn` to every channel a worker is woken on."""
    for channel in (JOBS_CHANNEL, CONTROL_CHANNEL, wake_channel(worker_id)):
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


async def register(
    conn: Connection,
    worker_id: uuid.UUID,
    hostname: str,
    pid: int,
    queues: Sequence[str],
    concurrency: int,
    heartbeat_interval: float = 2.0,
    stall_timeout: float = STALL_TIMEOUT,
    *,
    tasks: Sequence[str] | None = None,
) -> None:
    """Record a worker: `tasks` are the names of the tasks it can run (None: any, as for
    workers of code that did not record them)."""
    await conn.execute(
        QUERIES["worker_register"],
        {
            "worker_id": worker_id,
            "hostname": hostname,
            "pid": pid,
            "queues": list(queues),
            "concurrency": concurrency,
            "heartbeat_interval": heartbeat_interval,
            "stall_timeout": stall_timeout,
            "tasks": None if tasks is None else list(tasks),
        },
    )


async def heartbeat(conn: Connection, worker_id: uuid.UUID, idle_slots: int | None = None) -> Heartbeat:
    """Mark the worker alive (and set its idle slots, unless None); what it must stop or let go."""
    params = {"worker_id": worker_id, "idle_slots": idle_slots}
    cursor = await conn.execute(QUERIES["worker_heartbeat"], params)
    row = await cursor.fetchone()
    assert row is not None
    previous = row["previous_state"]
    return Heartbeat(
        known=previous is not None,
        was_presumed_dead=previous == "dead",
        stop_requested=frozenset(row["stop_requested"]),
        held_leases=frozenset(row["held_leases"]),
    )


async def deregister(conn: Connection, worker_id: uuid.UUID) -> None:
    await conn.execute(QUERIES["worker_deregister"], {"worker_id": worker_id})


async def list_workers(conn: Connection, include_gone: bool = False) -> list[Worker]:
    cursor = await conn.execute(QUERIES["worker_list"], {"include_gone": include_gone})
    return [Worker.from_row(row) for row in await cursor.fetchall()]


async def prune(conn: Connection, older_than_seconds: float) -> int:
    """Delete workers that stopped or died longer ago than the given age; returns how many."""
    cursor = await conn.execute(QUERIES["worker_prune"], {"older_than_seconds": older_than_seconds})
    return len(await cursor.fetchall())


async def count_alive(conn: Connection) -> int:
    """Workers that heartbeated within their own stall timeout."""
    cursor = await conn.execute(QUERIES["worker_count_alive"], {})
    row = await cursor.fetchone()
    return int(row["alive"]) if row else 0
