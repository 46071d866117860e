"""The leadership lease against a real PostgreSQL: who may take it, and when (migration 0005).

Each "replica" is a session of its own, as the operator's leadership loop keeps one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from pgjobs.store import connecting, leases, queries

pytestmark = pytest.mark.integration

T = TypeVar("T")
Session = queries.Connection


def run(database: connecting.DatabaseSettings, scenario: Callable[..., Awaitable[T]], sessions: int) -> T:
    async def main() -> T:
        conns = [await connecting.connect(database.for_session()) for _ in range(sessions)]
        try:
            return await scenario(*conns)
        finally:
            for conn in conns:
                await conn.close()

    return asyncio.run(main())


async def candidate(conn: Session, name: str, lease: float) -> int | None:
    """What a replica does each round: the lock when free, then the lease."""
    await leases.try_lock(conn)
    return await leases.acquire(conn, name, lease)


def test_one_leader_while_its_lease_runs(database: connecting.DatabaseSettings) -> None:
    async def scenario(a: Session, b: Session) -> None:
        assert await candidate(a, "a", 30) == 1
        assert await candidate(b, "b", 30) is None  # neither the lock nor a lapsed lease
        assert await leases.renew(a, 1, 30)
        assert await candidate(b, "b", 30) is None
        shown = await leases.show(a)
        assert shown is not None and shown.term == 1 and shown.holder == "a"

    run(database, scenario, 2)


def test_a_frozen_leader_is_replaced_once_its_lease_runs_out(database: connecting.DatabaseSettings) -> None:
    """The leader keeps its session and its lock but stops renewing (paused, starved of CPU)."""

    async def scenario(a: Session, b: Session) -> None:
        assert await candidate(a, "a", 0.5) == 1
        assert await candidate(b, "b", 30) is None
        await asyncio.sleep(0.7)
        assert await candidate(b, "b", 30) == 2  # without the lock, which the frozen one holds
        assert not await leases.renew(a, 1, 30)  # the old leader wakes: its term is over
        assert await candidate(a, "a", 30) is None  # and cannot take it back (lock or not)
        assert await leases.renew(b, 2, 30)

    run(database, scenario, 2)


def test_a_dead_leader_is_replaced_at_once(database: connecting.DatabaseSettings) -> None:
    async def scenario(a: Session, b: Session) -> None:
        assert await candidate(a, "a", 300) == 1
        await a.close()  # its session ends: the lock is free, the lease has 300 s left
        for _ in range(50):  # the server ends the backend a moment after the client leaves
            if (term := await candidate(b, "b", 300)) is not None:
                break
            await asyncio.sleep(0.1)
        assert term == 2

    run(database, scenario, 2)


def test_a_leader_that_stops_on_purpose_hands_over_at_once(database: connecting.DatabaseSettings) -> None:
    async def scenario(a: Session, b: Session) -> None:
        assert await candidate(a, "a", 300) == 1
        await leases.release(a, 1)
        # b has no lock (a's session holds it) and a's lease ended: a is the lock holder, so
        # this is the case of a leader of this code that let go
        assert await candidate(b, "b", 300) == 2
        assert not await leases.renew(a, 1, 300)

    run(database, scenario, 2)


def test_no_lease_is_taken_next_to_a_leader_of_older_code(database: connecting.DatabaseSettings) -> None:
    """During a rolling update, a replica of code from before the lease leads by the lock alone:
    a newer replica must not lead next to it, even with an old lease row run out."""

    async def scenario(old: Session, new: Session, earlier: Session) -> None:
        # a lease left by a replica of this code that led before, run out
        assert await candidate(earlier, "earlier", 0.1) == 1
        await leases.release(earlier, 1)
        await earlier.close()
        for _ in range(50):
            if await leases.try_lock(old):  # what older code does, and nothing more
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        assert await candidate(new, "new", 30) is None
        await old.close()  # the old replica goes away: the newer one may lead
        for _ in range(50):
            if (term := await candidate(new, "new", 30)) is not None:
                break
            await asyncio.sleep(0.1)
        assert term == 2

    run(database, scenario, 3)
