"""The producer API on real PostgreSQL: jobs written inside the application's own transaction."""

from __future__ import annotations

import asyncio
import datetime

import psycopg
import pytest

import pgjobs
from pgjobs.states import JobState, Priority
from pgjobs.store import connecting, jobs
from tests.processes import Database

pytestmark = pytest.mark.integration


def application_connection(database: connecting.DatabaseSettings) -> psycopg.Connection[tuple[object, ...]]:
    """What an application holds: a plain connection (tuple rows, not autocommit)."""
    return psycopg.connect(database.conninfo())


def ids_in_database(database: connecting.DatabaseSettings) -> set[int]:
    return {job.id for job in Database(database).call(lambda conn: jobs.list_jobs(conn, None, 1000))}


def test_a_rollback_leaves_no_job_and_a_commit_makes_it_visible(
    database: connecting.DatabaseSettings,
) -> None:
    with application_connection(database) as conn:
        rolled_back = pgjobs.enqueue(conn, "noop", args={"order": 1})
        conn.rollback()
        kept = pgjobs.enqueue(conn, "noop", args={"order": 2}, priority="High", queue="mail")
        assert kept not in ids_in_database(database)  # not visible before the commit
        conn.commit()
    assert ids_in_database(database) == {kept} and rolled_back != kept
    job = Database(database).job(kept)
    assert (job.state, job.priority, job.queue, job.args) == (
        JobState.PENDING,
        Priority.HIGH,
        "mail",
        {"order": 2},
    )


def test_async_and_batches(database: connecting.DatabaseSettings) -> None:
    async def produce() -> int:
        async with await psycopg.AsyncConnection.connect(database.conninfo()) as conn:
            run_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
            return await pgjobs.enqueue_async(conn, "noop", run_at=run_at, max_attempts=5)

    later = asyncio.run(produce())
    with application_connection(database) as conn:
        batch = pgjobs.enqueue_many(conn, "noop", [{"n": n} for n in range(3)], queue="bulk")
    assert ids_in_database(database) == {later, *batch}
    assert Database(database).job(later).run_after > datetime.datetime.now(datetime.UTC)


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("task", "options", "message"),
    [
        ("noop", {"args": [1, 2]}, "JSON object"),
        ("noop", {"priority": "Urgent"}, "unknown priority"),
        ("no spaces allowed", {}, "not a valid task name"),
        ("noop", {"args": {"deep": nested(5000)}}, "args cannot be stored"),
    ],
)
def test_a_bad_job_raises_before_anything_is_written(
    database: connecting.DatabaseSettings, task: str, options: dict[str, object], message: str
) -> None:
    with application_connection(database) as conn:
        with pytest.raises(pgjobs.InvalidJob, match=message):
            pgjobs.enqueue_many(conn, "noop", [{"fine": True}]) if task == "batch" else pgjobs.enqueue(
                conn, task, **options
            )
        conn.commit()
    assert ids_in_database(database) == set()


def test_a_batch_with_one_bad_job_writes_none(database: connecting.DatabaseSettings) -> None:
    with application_connection(database) as conn:
        with pytest.raises(pgjobs.InvalidJob):
            pgjobs.enqueue_many(conn, "noop", [{"fine": True}, {"bad": float("nan")}])
        conn.commit()
    assert ids_in_database(database) == set()
