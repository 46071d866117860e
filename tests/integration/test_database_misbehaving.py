"""PostgreSQL as it really misbehaves: a read-only window, a pooler mixing named statements.

A switchover leaves the worker's sessions on a server that refuses writes
(`ReadOnlySqlTransaction`, not a broken connection), here made with
`ALTER DATABASE … SET default_transaction_read_only` and cut sessions, as a demoted primary
behind the same Service does. The worker must drop those sessions, reach the writable server
again, keep its heartbeat fresh and finish its job once; never keep running on a dead heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from pgjobs.operator import database as operator_database
from pgjobs.states import FINISHED_STATES, JobState
from pgjobs.store import connecting, jobs
from pgjobs.store.queries import Connection
from pgjobs.store.records import NewJob
from pgjobs.worker import links
from tests.integration import pooler
from tests.processes import Database, Ledger, WorkerProcess, pgjobs, set_read_only, wait_for

pytestmark = pytest.mark.integration


def heartbeat_age(database: connecting.DatabaseSettings) -> float:
    async def run() -> float:
        conn = await connecting.connect(database)
        async with conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM now() - max(heartbeat_at))::float AS age FROM pgjobs.workers"
            )
            row = await cur.fetchone()
            return float(row["age"]) if row and row["age"] is not None else float("inf")

    return asyncio.run(run())


def test_a_read_only_window_leaves_no_zombie_worker(database, spawn, ledger: Ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    [job_id] = db.enqueue("record", 1, args={"seconds": 8}, max_attempts=1)
    worker = spawn("--stall-timeout", "4")
    wait_for(lambda: db.job(job_id).state is JobState.RUNNING, 30, what="the job to run")
    set_read_only(database, True)
    time.sleep(3)
    set_read_only(database, False)
    writable_at = time.monotonic()
    # Within a few heartbeats of writes coming back, the worker beats again from a new session.
    wait_for(lambda: heartbeat_age(database) < 2, 20, interval=0.3, what="a fresh heartbeat after the window")
    print(f"\nread-only window: a fresh heartbeat {time.monotonic() - writable_at:.1f}s after writes resumed")
    wait_for(lambda: db.job(job_id).state in FINISHED_STATES, 60, interval=0.3, what="the job to finish")
    job = db.job(job_id)
    assert job.state is JobState.COMPLETED, (job, worker.output())
    assert ledger.count("done")[job_id] == 1
    assert "Traceback" not in worker.output()
    assert "read-only" in worker.output()  # the outage is said, once per link and window


def test_a_read_only_server_is_one_line_for_migrate(database, database_env) -> None:  # type: ignore[no-untyped-def]
    set_read_only(database, True)
    try:
        result = pgjobs(database_env, "migrate")
    finally:
        set_read_only(database, False)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only" in lines[0] and "primary" in lines[0], result.stderr


def test_links_behind_a_transaction_pool_without_the_flag_switch_with_one_warning(
    database: connecting.DatabaseSettings,
    transaction_pool: pooler.PgBouncer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two links claim one after the other through the pool, as two slots do: the second gets
    the first's server connection, named statement and all. Both claim, one WARNING says so."""
    through = connecting.DatabaseSettings(
        url=transaction_pool.url_without_password(database.database_name()), password=database.password
    )
    links._pooling_reported.clear()

    async def run() -> list[int]:
        first, second = links.Link(through, "slot-0"), links.Link(through, "slot-1")
        try:
            await first.call(lambda conn: jobs.enqueue(conn, NewJob("noop"), 4))
            claimed = []
            for link in (first, second, first, second):
                job = await link.call(lambda conn: jobs.claim(conn, uuid.uuid4(), ["default"]))
                claimed.append(job.id if job else 0)
            return claimed
        finally:
            await first.close()
            await second.close()

    with caplog.at_level(logging.WARNING, logger=links.__name__):
        claimed = asyncio.run(run())
    assert len(set(claimed)) == 4 and 0 not in claimed
    warnings = [r.getMessage() for r in caplog.records if "--no-prepared-statements" in r.getMessage()]
    assert len(warnings) == 1, caplog.text


def test_a_worker_behind_a_transaction_pool_without_the_flag_runs_every_job(
    database: connecting.DatabaseSettings,
    database_env: dict[str, str],
    ledger: Ledger,
    transaction_pool: pooler.PgBouncer,
) -> None:
    env = database_env | {
        "PGJOBS_DATABASE_URL": transaction_pool.url_without_password(database.database_name())
    }
    db = Database(database)
    ids = db.enqueue("record", 40, args={"seconds": 0})
    workers = [WorkerProcess(env, ledger, ("--concurrency", "2")) for _ in range(2)]
    try:
        wait_for(lambda: all(db.job(i).state is JobState.COMPLETED for i in ids), 60, what="every job done")
    finally:
        for worker in workers:
            worker.stop()
    assert set(ledger.count("done")) == set(ids) and max(ledger.count("done").values()) == 1
    for worker in workers:
        output = worker.output()
        assert "Traceback" not in output, output
        assert output.count("--no-prepared-statements") <= 1, output


def test_the_operator_pool_replaces_every_stale_connection_at_once(
    database: connecting.DatabaseSettings,
) -> None:
    """A restart or a failover breaks every idle connection of the operator's pool; the first one
    found broken has the others checked at once, so a client waits about one back-off pause
    (1 s), not one per stale connection (1 + 2 + 4 + 8 + 16 s for six, past the timeout)."""

    async def run() -> float:
        pool = operator_database.Database(database, max_size=6)
        await pool.open()
        try:
            async with contextlib.AsyncExitStack() as held:  # six connections, then all idle
                for _ in range(6):
                    await held.enter_async_context(pool.connection())
            await asyncio.sleep(operator_database.TRUSTED_FOR)  # checked again when handed out
            admin = await connecting.connect(database, dbname="postgres")
            async with admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'pgjobs-operator'"
                )
            started = time.monotonic()
            async with pool.connection(timeout=20) as conn:
                await conn.execute("SELECT 1")
            return time.monotonic() - started
        finally:
            await pool.close()

    waited = asyncio.run(run())
    assert waited < 3, f"a connection took {waited:.1f}s after every pooled one broke"


def _conflicts_retried() -> float:
    return REGISTRY.get_sample_value("pgjobs_worker_conflicts_retried_total") or 0.0


def test_a_deadlock_lost_runs_again_at_once_on_the_same_connection(
    database: connecting.DatabaseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Two transactions lock two rows in opposite orders, the link's first: PostgreSQL rolls the
    link's back (40P01), and the link runs it again at once on the same connection without a line
    above DEBUG, as busy slots' claims need (links.py); the other transaction goes through too."""

    async def run() -> tuple[list[int], int, float]:
        setup = await connecting.connect(database)
        other = await connecting.connect(database)
        link = links.Link(database, "slot-0")
        pids: list[int] = []
        async with setup, other:
            await setup.execute("CREATE TABLE deadlock_pair (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)")
            await setup.execute("INSERT INTO deadlock_pair (id) VALUES (1), (2)")
            first_locked = asyncio.Event()

            async def opposite_order() -> None:
                async with other.transaction():
                    await other.execute("UPDATE deadlock_pair SET n = n + 1 WHERE id = 2")
                    await first_locked.wait()
                    await asyncio.sleep(0.3)  # the link waits for row 2 first: its timer fires first
                    await other.execute("UPDATE deadlock_pair SET n = n + 1 WHERE id = 1")

            async def one_then_two(conn: Connection) -> int:
                pids.append(conn.pgconn.backend_pid)
                async with conn.transaction():
                    await conn.execute("UPDATE deadlock_pair SET n = n + 1 WHERE id = 1")
                    first_locked.set()
                    await asyncio.sleep(0.1)
                    await conn.execute("UPDATE deadlock_pair SET n = n + 1 WHERE id = 2")
                return conn.pgconn.backend_pid

            try:
                before = _conflicts_retried()
                started = time.monotonic()
                _, pid = await asyncio.gather(opposite_order(), link.call(one_then_two))
                took = time.monotonic() - started
                cur = await setup.execute("SELECT sum(n) AS n FROM deadlock_pair")
                row = await cur.fetchone()
                assert row is not None and row["n"] == 4, "each transaction updates both rows once"
                assert _conflicts_retried() == before + 1
                return [*pids, pid], len(pids), took
            finally:
                await link.close()
                await setup.execute("DROP TABLE deadlock_pair")

    with caplog.at_level(logging.DEBUG, logger=links.__name__):
        pids, tries, took = asyncio.run(run())
    assert tries == 2 and len(set(pids)) == 1, f"tries {tries}, backend pids {pids}"
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG], caplog.text
    assert "deadlock detected (SQLSTATE 40P01); running it again" in caplog.text
    # deadlock_timeout (1 s) and the two transactions; a reconnect with backoff is not in it.
    assert took < 1.0 + 0.4 + 0.5, f"took {took:.2f}s"


def test_a_conflict_that_keeps_coming_back_is_an_outage(
    database: connecting.DatabaseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A serialization failure on every try (the server's, raised here on purpose) is run again
    at once `CONFLICT_RETRIES` times, then counts as an outage: one WARNING, a new connection,
    backoff, and the operation goes through once the conflict is gone."""
    failing = links.CONFLICT_RETRIES + 2

    async def run() -> list[int]:
        link = links.Link(database, "slot-0")
        pids: list[int] = []

        async def conflicted(conn: Connection) -> None:
            pids.append(conn.pgconn.backend_pid)
            if len(pids) <= failing:
                await conn.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")

        try:
            await link.call(conflicted)
        finally:
            await link.close()
        return pids

    with caplog.at_level(logging.WARNING, logger=links.__name__):
        pids = asyncio.run(run())
    assert len(pids) == failing + 1
    first_connection = pids[: links.CONFLICT_RETRIES + 1]
    assert len(set(first_connection)) == 1 and pids[-1] not in first_connection, pids
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "SQLSTATE 40001" in warnings[0], warnings
