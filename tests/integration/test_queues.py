"""Queues shaped in the database: a paused queue offers nothing, a capped one never runs more
than its cap at once, a rate-limited one never starts faster than its rate, however many
workers claim (real worker processes, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from pgjobs.states import Priority
from pgjobs.store import connecting, jobs, queries, queues
from pgjobs.store.records import NewJob
from tests.processes import Database, Ledger

pytestmark = pytest.mark.integration


def shape(
    db: Database,
    name: str,
    *,
    paused: bool = False,
    max_running: int | None = None,
    max_per_second: float | None = None,
) -> None:
    spec = queues.QueueSpec(
        name=name,
        resource_uid=f"uid-{name}",
        paused=paused,
        max_running=max_running,
        max_per_second=max_per_second,
    )
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


def start_times(db: Database, queue: str) -> list[float]:
    """When each of the queue's jobs was claimed (its claim's transaction start), in order."""

    async def read(conn: queries.Connection) -> list[float]:
        cursor = await conn.execute(
            "SELECT extract(epoch FROM started_at)::float8 AS at FROM pgjobs.jobs"
            " WHERE queue = %s AND started_at IS NOT NULL ORDER BY started_at",
            [queue],
        )
        return [float(row["at"]) for row in await cursor.fetchall()]

    return db.call(read)


def test_three_workers_of_four_slots_start_no_faster_than_the_rate(  # type: ignore[no-untyped-def]
    database, spawn, ledger: Ledger
) -> None:
    """12 slots compete for 60 no-op jobs of a queue limited to 10 starts per second: a second's
    worth starts at once, the rest at the rate, and no stretch of time ever sees more starts than
    the bucket allows (10 + 10 per second). The slots claim when a start is due, not at their
    poll (5 s here): the 50 jobs after the first 10 take about 5 s, not 20 or more."""
    rate, burst = 10.0, 10
    db = Database(database)
    shape(db, "metered", max_per_second=rate)
    ids = db.enqueue("record", 60, queue="metered", args={"seconds": 0})
    for _ in range(3):
        spawn("--queue", "metered", "--concurrency", "4", "--poll-interval", "5")
    deadline = time.monotonic() + 90
    while running_and_done(db, "metered")[1] < len(ids):
        assert time.monotonic() < deadline, f"not every job completed: {running_and_done(db, 'metered')}"
        time.sleep(0.2)
    starts = start_times(db, "metered")
    assert len(starts) == len(ids) and len(ledger.count("done")) == len(ids)
    # A claim's started_at is its transaction's start; its token is taken a moment later (after
    # waiting its turn for the queue's row): one start of slack either way.
    worst = max(
        (j - i + 1) - (burst + rate * (starts[j] - starts[i]))
        for i in range(len(starts))
        for j in range(i, len(starts))
    )
    assert worst <= 1, f"{worst:.1f} starts over what the bucket allows; starts: {starts}"
    paced = starts[burst:]
    span = paced[-1] - paced[0]
    assert span <= (len(paced) - 1) / rate * 1.3, f"{len(paced)} paced starts took {span:.1f}s"


def test_a_waiting_completion_holds_no_rate_limited_queues_row(database: connecting.DatabaseSettings) -> None:
    """The hot statement completes before it takes a rate-limited queue's start (or a capped
    queue's turn): a completion that waits for its row (which another claim may hold a moment)
    does not hold the queue's row meanwhile. Left to PostgreSQL's order it did, and claims waited
    on each other in a circle until the deadlock timeout (1 s) rolled one back."""

    async def run() -> tuple[bool, int | None, int]:
        slot, blocker, probe = [await connecting.connect(database) for _ in range(3)]
        async with slot, blocker, probe:
            await queues.apply(slot, queues.QueueSpec("metered", "uid-metered", max_per_second=10))
            worker = uuid.uuid4()
            first, second = await jobs.enqueue(slot, NewJob("noop", queue="metered"), 2)
            held = await jobs.claim(slot, worker, ["metered"])
            assert held is not None and held.id == first
            async with blocker.transaction():
                await blocker.execute("SELECT FROM pgjobs.jobs WHERE id = %s FOR UPDATE", [first])
                completing = asyncio.create_task(
                    jobs.complete_and_claim(slot, held, None, None, worker, ["metered"])
                )
                await asyncio.sleep(0.5)
                assert not completing.done(), "the completion should wait for the blocker's lock"
                async with probe.transaction():
                    # NOWAIT: fails at once if the waiting statement holds the queue's row.
                    await probe.execute("SELECT FROM pgjobs.queues WHERE name = 'metered' FOR UPDATE NOWAIT")
            answer = await asyncio.wait_for(completing, 10)
            return answer.completed, None if answer.job is None else answer.job.id, second

    completed, claimed, second = asyncio.run(run())
    assert completed and claimed == second


def test_a_start_lost_to_another_claim_passes_the_turn_to_the_next_head(
    database: connecting.DatabaseSettings,
) -> None:
    """A claim sees a start left in a rate-limited queue's bucket, but another claim takes it
    first: the claim moves on to the next head of the same priority (another queue's), not to a
    lower priority and not to nothing."""

    async def run() -> tuple[int | None, int]:
        conn, other = [await connecting.connect(database) for _ in range(2)]
        async with conn, other:
            await queues.apply(conn, queues.QueueSpec("metered", "uid-metered", max_per_second=0.001))
            [metered] = await jobs.enqueue(conn, NewJob("noop", queue="metered", priority=Priority.HIGH))
            [free_high] = await jobs.enqueue(conn, NewJob("noop", queue="free", priority=Priority.HIGH))
            await jobs.enqueue(conn, NewJob("noop", queue="free", priority=Priority.REGULAR))
            async with other.transaction():
                # The bucket's one start, taken and not yet committed: the claim below still sees
                # it in its snapshot, picks the older head (metered's), and waits for the row.
                taken = await other.execute("SELECT pgjobs.queue_take_start('metered') AS taken")
                assert await taken.fetchone() == {"taken": True}
                claiming = asyncio.create_task(jobs.claim(conn, uuid.uuid4(), ["free", "metered"]))
                await asyncio.sleep(0.5)
                assert not claiming.done(), "the claim should wait for the bucket's row"
            job = await asyncio.wait_for(claiming, 10)
            assert metered != free_high
            return None if job is None else job.id, free_high

    claimed, free_high = asyncio.run(run())
    assert claimed == free_high
