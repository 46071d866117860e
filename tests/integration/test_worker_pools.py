"""Row scoping for worker logins (migration 0013_worker_pools), against a real PostgreSQL.

A login given a pool by `pgjobs migrate --pool LOGIN=QUEUE,...` sees and changes only the jobs of
its queues, and only the worker rows it registered, whatever SQL it sends; a login without a
pool (the operator's, or any single-pool install) sees everything. The claim keeps its plan.
"""

from __future__ import annotations

import datetime
import subprocess
import uuid
from typing import Any

import psycopg
import pytest

from bench import coldburst
from pgjobs.states import JobState
from pgjobs.store import connecting, job_logs, jobs, queries, queues, workers
from tests.integration.conftest import LoginFactory, run_as
from tests.integration.test_claim_plan import CLAIM, assert_claim_stops_at_the_first_row, generic_plan
from tests.integration.test_roles import env_for
from tests.processes import Database, Ledger, WorkerProcess, pgjobs, wait_for

pytestmark = pytest.mark.integration


def user_of(settings: connecting.DatabaseSettings) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(settings.url)["user"])


def give_pools(database: connecting.DatabaseSettings, *pools: str) -> subprocess.CompletedProcess[str]:
    argv = ["migrate", *(arg for pool in pools for arg in ("--pool", pool))]
    return pgjobs(env_for(database), *argv)


@pytest.fixture
def tenants(
    database: connecting.DatabaseSettings, login: LoginFactory
) -> tuple[connecting.DatabaseSettings, connecting.DatabaseSettings, connecting.DatabaseSettings]:
    """Worker logins: A with pool [a], B with pool [b], and one without a pool."""
    a, b, unpooled = login("pgjobs_worker"), login("pgjobs_worker"), login("pgjobs_worker")
    done = give_pools(database, f"{user_of(a)}=a", f"{user_of(b)}=b,b2")
    assert done.returncode == 0, done.stderr
    return a, b, unpooled


async def _visible_queues(conn: queries.Connection) -> list[str]:
    cursor = await conn.execute("SELECT DISTINCT queue FROM pgjobs.jobs ORDER BY queue")
    return [str(row["queue"]) for row in await cursor.fetchall()]


def test_a_pooled_login_sees_and_claims_only_its_queues(
    database: connecting.DatabaseSettings, tenants: Any
) -> None:
    a, b, unpooled = tenants
    db = Database(database)
    mine = db.enqueue("noop", 2, queue="a")
    db.enqueue("noop", 2, queue="b")
    assert run_as(a, _visible_queues) == ["a"]
    assert run_as(b, _visible_queues) == ["b"]
    assert run_as(unpooled, _visible_queues) == ["a", "b"]

    async def claim_everything(conn: queries.Connection) -> list[int]:
        worker, claimed = uuid.uuid4(), []
        while (job := await jobs.claim(conn, worker, ["a", "b"])) is not None:
            claimed.append(job.id)
        return claimed

    assert sorted(run_as(a, claim_everything)) == sorted(mine)
    assert [job.state for job in db.call(lambda conn: jobs.list_jobs(conn))].count(JobState.PENDING) == 2


def test_a_pooled_login_cannot_forge_another_pools_results_or_logs(
    database: connecting.DatabaseSettings, tenants: Any
) -> None:
    a, _, _ = tenants
    db = Database(database)
    [other] = db.enqueue("noop", queue="b")

    async def forge(conn: queries.Connection) -> int:
        cursor = await conn.execute(
            "UPDATE pgjobs.jobs SET state = 'completed', result = '{\"forged\": true}' WHERE id = %s", [other]
        )
        return cursor.rowcount

    assert run_as(a, forge) == 0
    assert db.job(other).state is JobState.PENDING

    line = job_logs.NewLine(datetime.datetime.now(datetime.UTC), "INFO", "forged line")
    run_as(a, lambda conn: job_logs.write(conn, other, 1, [line]))  # the job is not there for A

    async def insert_line(conn: queries.Connection) -> None:
        await conn.execute(
            "INSERT INTO pgjobs.job_logs (job_id, attempt, seq, at, level, message)"
            " VALUES (%s, 1, 1, now(), 'INFO', 'forged line')",
            [other],
        )

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        run_as(a, insert_line)
    assert db.call(lambda conn: job_logs.read(conn, other)) == []


def test_a_pooled_login_changes_only_its_own_workers(
    database: connecting.DatabaseSettings, tenants: Any
) -> None:
    a, b, _ = tenants
    theirs, mine = uuid.uuid4(), uuid.uuid4()
    run_as(b, lambda conn: workers.register(conn, theirs, "b-pod", 1, ["b"], 1))
    run_as(a, lambda conn: workers.register(conn, mine, "a-pod", 1, ["a"], 1))

    async def mark_dead(conn: queries.Connection) -> list[int]:
        counts = []
        for worker in (theirs, mine):
            cursor = await conn.execute("UPDATE pgjobs.workers SET state = 'dead' WHERE id = %s", [worker])
            counts.append(cursor.rowcount)
        return counts

    assert run_as(a, mark_dead) == [0, 1]

    async def register_as_b(conn: queries.Connection) -> None:
        await conn.execute(
            "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, login)"
            " VALUES (%s, 'x', 1, '{b}', 1, %s)",
            [uuid.uuid4(), user_of(b)],
        )

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        run_as(a, register_as_b)


def _without_skipped_branches(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan less the branches PostgreSQL never runs: under a One-Time Filter of false (a bare
    claim's completion, `id = NULL`; with row-level security its scan is a filtered Seq Scan
    there, which the executor skips)."""
    kept = [_without_skipped_branches(child) for child in plan.get("Plans", [])]
    kept = [child for child in kept if child.get("One-Time Filter") != "false"]
    return {**plan, "Plans": kept}


def test_the_claim_of_a_pooled_login_reads_its_index_range(
    database: connecting.DatabaseSettings, tenants: Any
) -> None:
    """Custom and generic plans: row scoping adds a filter to the claim's index range, no scan."""
    a, _, _ = tenants
    Database(database).enqueue("noop", 50, queue="a")
    Database(database).enqueue("noop", 50, queue="b")
    with psycopg.connect(a.conninfo(), autocommit=True) as conn:
        parameters = coldburst.claim_parameters(("a", "b"))
        row = conn.execute("EXPLAIN (FORMAT JSON) " + CLAIM, parameters).fetchone()
        assert row is not None
        assert_claim_stops_at_the_first_row(_without_skipped_branches(row[0][0]["Plan"]))
        assert_claim_stops_at_the_first_row(generic_plan(conn, ("a", "b")))


def test_a_worker_process_of_a_pool_runs_only_its_queues(
    database: connecting.DatabaseSettings, database_env: dict[str, str], ledger: Ledger, tenants: Any
) -> None:
    a, _, _ = tenants
    db = Database(database)
    mine = db.enqueue("record", 3, queue="a")
    theirs = db.enqueue("record", 3, queue="b")
    env = database_env | {"PGJOBS_DATABASE_URL": a.url, "DB_PASSWORD": a.password or ""}
    worker = WorkerProcess(env, ledger, ("--queue", "a,b"))
    try:
        wait_for(lambda: all(db.job(i).state is JobState.COMPLETED for i in mine), 30, what="pool a's jobs")
    finally:
        worker.stop()
    assert all(db.job(i).state is JobState.PENDING for i in theirs)
    assert "Traceback" not in worker.output(), worker.output()


def test_pools_are_given_and_lifted_by_migrate(database: connecting.DatabaseSettings, tenants: Any) -> None:
    a, _, _ = tenants
    Database(database).enqueue("noop", queue="b")
    assert give_pools(database, f"{user_of(a)}=").returncode == 0
    assert run_as(a, _visible_queues) == ["b"]
    refused = give_pools(database, "no-equals-sign")
    assert refused.returncode == 2 and "LOGIN=QUEUE" in refused.stderr and "Traceback" not in refused.stderr


def test_a_pooled_login_takes_starts_of_its_own_rate_limited_queues_only(
    database: connecting.DatabaseSettings, tenants: Any
) -> None:
    """Worker logins take starts from a rate-limited queue's bucket (migration 0014): a pooled
    one only from its pool's queues, and it may change nothing of a queue but the bucket."""
    a, _, _ = tenants
    db = Database(database)
    for name in ("a", "b"):
        spec = queues.QueueSpec(name, f"uid-{name}", max_per_second=0.001)  # one start, then none
        db.call(lambda conn, spec=spec: queues.apply(conn, spec))
    [mine] = db.enqueue("noop", queue="a")

    async def claim(conn: queries.Connection) -> int | None:
        job = await jobs.claim(conn, uuid.uuid4(), ["a"])
        return None if job is None else job.id

    assert run_as(a, claim) == mine

    async def drain_b(conn: queries.Connection) -> list[int]:
        await conn.execute("SELECT pgjobs.queue_take_start('b')")  # b's row is not A's to see
        cursor = await conn.execute("UPDATE pgjobs.queues SET start_tokens = -100 WHERE name = 'b'")
        return [cursor.rowcount]

    assert run_as(a, drain_b) == [0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run_as(a, lambda conn: conn.execute("UPDATE pgjobs.queues SET max_per_second = 1000"))

    async def buckets(conn: queries.Connection) -> dict[str, Any]:
        cursor = await conn.execute("SELECT name, start_tokens, tokens_at FROM pgjobs.queues")
        return {row["name"]: (row["start_tokens"], row["tokens_at"]) for row in await cursor.fetchall()}

    found = db.call(buckets)
    assert found["b"] == (0.0, None), "b's bucket untouched"
    assert found["a"][1] is not None and found["a"][0] < 1, "a's start was taken by A's claim"
