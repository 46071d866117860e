"""The hot path's own lane (`pgjobs/store/hotpath.py`) against a real server: errors, broken and
new connections, and psycopg using the same connection in between."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import psycopg
import pytest

from pgjobs.states import JobState
from pgjobs.store import connecting, hotpath, jobs, queries
from tests.processes import Database

pytestmark = pytest.mark.integration


async def _terminate(database: connecting.DatabaseSettings, conn: queries.Connection) -> None:
    """End the server side of `conn`, as a crash or an administrator would."""
    async with await connecting.connect(database) as other:
        await other.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])


def test_claim_matches_what_psycopg_reads_of_the_row(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    [job_id] = db.enqueue("noop", args={"text": 'é "quoted" {x}', "n": [1, None]})
    worker = uuid.uuid4()

    async def run(conn: queries.Connection) -> None:
        job = await jobs.claim(conn, worker, ["other", 'odd "queue", {x}', "default"])
        assert job is not None
        row = await (await conn.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", [job_id])).fetchone()
        assert row is not None
        assert (job.id, job.task, job.args, job.lease, job.attempt) == (
            row["id"],
            row["task"],
            row["args"],
            row["lease"],
            row["attempt"],
        )
        assert (job.max_attempts, job.backoff_seconds, job.timeout_seconds) == (
            row["max_attempts"],
            row["backoff_seconds"],
            row["timeout_seconds"],
        )
        assert job.created_at == row["created_at"] and job.started_at == row["started_at"]
        assert job.started_at.tzinfo is not None and row["worker_id"] == worker

    db.call(run)


def test_a_server_error_is_psycopgs_and_leaves_the_connection_usable(
    database: connecting.DatabaseSettings,
) -> None:
    db, worker = _two_noop_jobs(database)

    async def run(conn: queries.Connection) -> None:
        job = await jobs.claim(conn, worker, ["default"])
        assert job is not None
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            await jobs.complete_and_claim(conn, job, float("nan"), None, worker, ["default"])
        assert await (await conn.execute("SELECT 1 AS one")).fetchone() == {"one": 1}
        completed, following, _ = await jobs.complete_and_claim(conn, job, [1], "done", worker, ["default"])
        assert completed and following is not None

    db.call(run)
    assert db.job(1).state is JobState.COMPLETED


def test_a_lost_connection_raises_operational_error_and_a_new_one_works(
    database: connecting.DatabaseSettings,
) -> None:
    db, worker = _two_noop_jobs(database)

    async def run(conn: queries.Connection) -> None:
        assert await jobs.claim(conn, worker, ["default"]) is not None
        await _terminate(database, conn)
        with pytest.raises(psycopg.OperationalError):
            await jobs.claim(conn, worker, ["default"])
        with pytest.raises(psycopg.OperationalError):
            await jobs.claim(conn, worker, ["default"])  # closed: refused before anything is sent
        async with await connecting.connect(database) as fresh:  # prepared again on its own
            job = await jobs.claim(fresh, worker, ["default"])
            assert job is not None and job.started_at <= datetime.datetime.now(datetime.UTC)

    db.call(run)


def test_notifications_are_delivered_until_the_connection_is_lost(
    database: connecting.DatabaseSettings,
) -> None:
    async def run() -> None:
        received: list[tuple[str, str]] = []
        arrived = asyncio.Event()

        def deliver(channel: str, payload: str) -> None:
            received.append((channel, payload))
            arrived.set()

        async with await connecting.connect(database) as listener:
            await listener.execute("LISTEN pgjobs_jobs")
            await listener.execute("LISTEN pgjobs_control")
            receiving = asyncio.create_task(hotpath.receive_notifications(listener, deliver))
            async with await connecting.connect(database) as other:
                await other.execute("SELECT pg_notify('pgjobs_control', 'é'), pg_notify('pgjobs_jobs', '')")
                await asyncio.wait_for(arrived.wait(), 5)
                assert received == [("pgjobs_control", "é"), ("pgjobs_jobs", "")]
            await _terminate(database, listener)
            with pytest.raises(psycopg.OperationalError):
                await asyncio.wait_for(receiving, 5)

    asyncio.run(run())


def test_a_kept_reader_survives_psycopg_between_round_trips_and_a_server_going_away(
    database: connecting.DatabaseSettings,
) -> None:
    db = Database(database)
    db.enqueue("noop", 3)
    worker = uuid.uuid4()

    async def run() -> None:
        conn = await connecting.connect(database)
        hotpath.keep_reader(conn)
        job = await jobs.claim(conn, worker, ["default"])
        assert job is not None
        assert await (await conn.execute("SELECT 2 AS two")).fetchone() == {"two": 2}  # psycopg's wait
        assert await jobs.report_progress(conn, job, 50) is False
        job = (await jobs.complete_and_claim(conn, job, None, None, worker, ["default"])).job
        assert job is not None
        await _terminate(database, conn)
        await asyncio.sleep(0.2)  # the goodbye arrives while nobody waits: not watched for ever
        with pytest.raises(psycopg.OperationalError):
            await jobs.complete_and_claim(conn, job, None, None, worker, ["default"])
        hotpath.release(conn)
        await conn.close()
        for _ in range(3):  # new connections may reuse the fd number: nothing stale is left
            async with await connecting.connect(database) as fresh:
                hotpath.keep_reader(fresh)
                assert await (await fresh.execute("SELECT 1 AS one")).fetchone() == {"one": 1}
                await jobs.claim(fresh, worker, ["default"])
                hotpath.release(fresh)

    asyncio.run(asyncio.wait_for(run(), 30))


def _two_noop_jobs(database: connecting.DatabaseSettings) -> tuple[Database, uuid.UUID]:
    """A database holding two pending noop jobs, and a worker id to claim them with."""
    db = Database(database)
    db.enqueue("noop", 2)
    return db, uuid.uuid4()
