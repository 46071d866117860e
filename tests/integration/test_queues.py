"""Queues shaped in the database: a paused queue offers nothing, a capped one never runs more
than its cap at once, however many workers claim (real worker processes, real PostgreSQL)."""

from __future__ import annotations

import time
import uuid

import pytest

from pgjobs.store import connecting, jobs, queries, queues
from tests.processes import Database, Ledger

pytestmark = pytest.mark.integration


def shape(db: Database, name: str, *, paused: bool = False, max_running: int | None = None) -> None:
    spec = queues.QueueSpec(name=name, resource_uid=f"uid-{name}", paused=paused, max_running=max_running)
    db.call(lambda conn: queues.apply(conn, spec))


def running_and_done(db: Database, queue: str) -> tuple[int, int]:
    """The queue's Running and Completed jobs, from one snapshot."""

    async def count(conn: queries.Connection) -> tuple[int, int]:
        row = await (
            await conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'running') AS running,"
                " count(*) FILTER (WHERE state = 'completed') AS done FROM pgjobs.jobs WHERE queue = %s",
                [queue],
            )
        ).fetchone()
        assert row is not None
        return int(row["running"]), int(row["done"])

    return db.call(count)


def test_a_paused_queue_offers_nothing_and_a_resumed_one_at_once(
    database: connecting.DatabaseSettings,
) -> None:
    db = Database(database)
    [paused_job] = db.enqueue("noop", queue="paused")
    [other] = db.enqueue("noop", queue="open")
    shape(db, "paused", paused=True)
    worker = uuid.uuid4()
    claimed = db.call(lambda conn: jobs.claim(conn, worker, ["paused", "open"]))
    assert claimed is not None and claimed.id == other
    assert db.call(lambda conn: jobs.claim(conn, worker, ["paused", "open"])) is None
    shape(db, "paused", paused=False)
    claimed = db.call(lambda conn: jobs.claim(conn, worker, ["paused", "open"]))
    assert claimed is not None and claimed.id == paused_job


def test_the_backlog_of_a_paused_queue_is_zero_for_the_autoscaler(
    database: connecting.DatabaseSettings,
) -> None:
    db = Database(database)
    db.enqueue("noop", 3, queue="paused")
    db.enqueue("noop", 2, queue="open")
    shape(db, "paused", paused=True)
    backlog = db.call(jobs.count_backlog)
    assert backlog.get("paused", 0) == 0 and backlog["open"] == 2


def test_a_deleted_pgqueue_leaves_no_row_behind(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    shape(db, "kept", paused=True)
    shape(db, "gone", paused=True)
    assert db.call(lambda conn: queues.remove_others(conn, ["uid-kept"])) == ["gone"]
    stats = {queue.name: queue for queue in db.call(queues.list_stats)}
    assert set(stats) == {"kept"} and stats["kept"].paused


def test_three_workers_of_four_slots_never_run_more_than_the_cap(  # type: ignore[no-untyped-def]
    database, spawn, ledger: Ledger
) -> None:
    """12 slots compete for 30 jobs of a queue capped at 3; sampled all along, never 4 at once."""
    db = Database(database)
    shape(db, "capped", max_running=3)
    ids = db.enqueue("record", 30, queue="capped", args={"seconds": 0.3})
    for _ in range(3):
        spawn("--queue", "capped", "--concurrency", "4")
    samples: list[int] = []
    deadline = time.monotonic() + 90
    while (sample := running_and_done(db, "capped"))[1] < len(ids):
        assert time.monotonic() < deadline, f"not every job completed; running counts: {samples}"
        samples.append(sample[0])
    assert max(samples) == 3, f"running counts sampled: {sorted(set(samples))}"
    assert samples.count(3) > 10, f"too few samples at the cap to tell: {samples}"
    assert len(ledger.count("done")) == 30
