"""Workers: registration with a fresh id per process, heartbeats, listing and pruning."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from pgjobs.store.queries import QUERIES, Connection
from pgjobs.store.records import Heartbeat, Worker


async def register(
    conn: Connection, worker_id: uuid.UUID, hostname: str, pid: int, queues: Sequence[str], concurrency: int
) -> None:
    await conn.execute(
        QUERIES["worker_register"],
        {
            "worker_id": worker_id,
            "hostname": hostname,
            "pid": pid,
            "queues": list(queues),
            "concurrency": concurrency,
        },
    )


async def heartbeat(conn: Connection, worker_id: uuid.UUID) -> Heartbeat:
    cursor = await conn.execute(QUERIES["worker_heartbeat"], {"worker_id": worker_id})
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


async def count_alive(conn: Connection, stall_seconds: float) -> int:
    cursor = await conn.execute(QUERIES["worker_count_alive"], {"stall_seconds": stall_seconds})
    row = await cursor.fetchone()
    return int(row["alive"]) if row else 0
