"""A deleted PgJob stays without a row: a create handled late, by another operator replica or a
retry, racing the deletion in either order, leaves no orphan row for a worker to run."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pgjobs.store import connecting, jobs, queries, resources
from pgjobs.store.records import NewJob, ResourceJob
from tests.processes import Database

pytestmark = pytest.mark.integration

#: Long enough for a statement that is not blocked to have run.
BLOCKED_FOR = 0.5


def _pgjob() -> ResourceJob:
    uid = str(uuid.uuid4())
    return ResourceJob(uid=uid, namespace="ns", name=f"job-{uid[:8]}", job=NewJob("noop"))


async def _row_count(conn: queries.Connection, uid: str) -> int:
    cursor = await conn.execute("SELECT count(*) AS n FROM pgjobs.jobs WHERE resource_uid = %s", [uid])
    row = await cursor.fetchone()
    assert row is not None
    return int(row["n"])


def test_a_create_after_the_deletion_makes_no_row(database: connecting.DatabaseSettings) -> None:
    pgjob = _pgjob()

    async def scenario(conn: queries.Connection) -> None:
        assert await resources.upsert(conn, pgjob, 1) is not None
        assert await jobs.delete_resource(conn, pgjob.uid)
        assert await resources.upsert(conn, pgjob, 1) is None
        assert await _row_count(conn, pgjob.uid) == 0

    Database(database).call(scenario)


def test_the_orphan_sweep_records_its_deletions_too(database: connecting.DatabaseSettings) -> None:
    first, second = _pgjob(), _pgjob()

    async def scenario(conn: queries.Connection) -> None:
        await resources.upsert(conn, first, 1)
        assert await jobs.delete_resources(conn, [first.uid, second.uid]) == 1
        assert await resources.upsert(conn, first, 1) is None
        assert await resources.upsert(conn, second, 1) is None

    Database(database).call(scenario)


def test_a_deletion_waits_for_a_create_in_flight_and_removes_its_row(
    database: connecting.DatabaseSettings,
) -> None:
    """Replica A's create has inserted but not committed when replica B deletes: B waits for A,
    then sees and removes the row (a plain DELETE would not see it, and the row would stay)."""
    pgjob = _pgjob()

    async def scenario() -> None:
        creator = await connecting.connect(database)
        deleter = await connecting.connect(database)
        async with creator, deleter:
            async with creator.transaction():
                assert await resources.upsert(creator, pgjob, 1) is not None
                deletion = asyncio.create_task(jobs.delete_resource(deleter, pgjob.uid))
                await asyncio.sleep(BLOCKED_FOR)
                assert not deletion.done(), "the deletion did not wait for the create in flight"
            assert await deletion is True
            assert await _row_count(creator, pgjob.uid) == 0

    asyncio.run(scenario())


def test_a_create_waits_for_a_deletion_in_flight_and_makes_no_row(
    database: connecting.DatabaseSettings,
) -> None:
    pgjob = _pgjob()

    async def scenario() -> None:
        creator = await connecting.connect(database)
        deleter = await connecting.connect(database)
        async with creator, deleter:
            assert await resources.upsert(creator, pgjob, 1) is not None
            async with deleter.transaction():
                assert await jobs.delete_resource(deleter, pgjob.uid) is True
                create = asyncio.create_task(resources.upsert(creator, pgjob, 2))
                await asyncio.sleep(BLOCKED_FOR)
                assert not create.done(), "the create did not wait for the deletion in flight"
            assert await create is None
            assert await _row_count(creator, pgjob.uid) == 0

    asyncio.run(scenario())


def test_records_of_deletions_are_forgotten_after_a_day(database: connecting.DatabaseSettings) -> None:
    old, recent = _pgjob(), _pgjob()

    async def scenario(conn: queries.Connection) -> None:
        await jobs.delete_resources(conn, [old.uid, recent.uid])
        await conn.execute(
            "UPDATE pgjobs.deleted_resources SET deleted_at = now() - interval '25 hours'"
            " WHERE resource_uid = %s",
            [old.uid],
        )
        assert await resources.forget_deleted(conn) >= 1
        cursor = await conn.execute(
            "SELECT resource_uid FROM pgjobs.deleted_resources WHERE resource_uid = ANY(%s)",
            [[old.uid, recent.uid]],
        )
        assert [row["resource_uid"] for row in await cursor.fetchall()] == [recent.uid]

    Database(database).call(scenario)
