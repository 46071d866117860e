"""Targeted wake-ups against a real PostgreSQL: idle-slot counts, the enqueue trigger's choice,
and worker processes that take a job only when named (or pass the wake-up on)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid

import psycopg
import psycopg.sql
import pytest

from pgjobs.devenv.postgres import free_port
from pgjobs.states import JobState
from pgjobs.store import connecting, jobs, queries, workers
from pgjobs.store.records import NewJob
from tests.processes import Database, pgjobs, wait_for

pytestmark = pytest.mark.integration


def idle_slots(db: Database, worker_id: uuid.UUID) -> int:
    [found] = [
        w for w in db.call(lambda conn: workers.list_workers(conn, include_gone=True)) if w.id == worker_id
    ]
    return found.idle_slots


def count_idle(db: Database) -> int:
    """Idle slots counted over every alive worker."""
    return sum(worker.idle_slots for worker in db.call(workers.list_workers))


def register(db: Database, queues: tuple[str, ...] = ("default",), concurrency: int = 2) -> uuid.UUID:
    worker_id = uuid.uuid4()
    db.call(lambda conn: workers.register(conn, worker_id, "test", 1, queues, concurrency))
    return worker_id


def test_a_slots_idleness_is_counted_when_it_changes(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    worker = register(db, concurrency=2)
    queues = ["default"]

    def claim(was_idle: bool | None) -> int | None:
        job = db.call(lambda conn: jobs.claim(conn, worker, queues, was_idle=was_idle))
        return None if job is None else job.id

    assert claim(False) is None and idle_slots(db, worker) == 1  # a busy slot found nothing
    assert claim(False) is None and idle_slots(db, worker) == 2
    assert claim(False) is None and idle_slots(db, worker) == 2  # never above the concurrency
    assert claim(True) is None and idle_slots(db, worker) == 2  # still idle: no write
    assert claim(None) is None and idle_slots(db, worker) == 2  # not counted either way
    [first, second] = db.enqueue("noop", 2)
    assert claim(True) == first and idle_slots(db, worker) == 1  # an idle slot found work

    async def complete_and_claim_next(conn: queries.Connection) -> int | None:
        held = await jobs.claim(conn, worker, queues)  # the second job, by a busy slot
        assert held is not None and held.id == second
        following = (await jobs.complete_and_claim(conn, held, None, None, worker, queues)).job
        return None if following is None else following.id

    assert db.call(complete_and_claim_next) is None
    assert idle_slots(db, worker) == 2  # the busy slot found no next job


def test_the_heartbeat_sets_the_idle_count_or_leaves_it(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    worker = register(db, concurrency=4)
    db.call(lambda conn: workers.heartbeat(conn, worker, 3))
    assert idle_slots(db, worker) == 3
    db.call(lambda conn: workers.heartbeat(conn, worker, None))
    assert idle_slots(db, worker) == 3
    db.call(lambda conn: workers.heartbeat(conn, worker, 0))
    assert idle_slots(db, worker) == 0


class Listener:
    """LISTEN on the channel every worker hears and on given workers' own: the enqueue trigger's
    choice, read as the channels it notified."""

    def __init__(self, database: connecting.DatabaseSettings) -> None:
        self.conn = psycopg.connect(database.for_session().conninfo(), autocommit=True)
        self.conn.execute("LISTEN pgjobs_jobs")

    def listen_for(self, *worker_ids: uuid.UUID) -> None:
        for worker_id in worker_ids:
            channel = psycopg.sql.Identifier(workers.wake_channel(worker_id))
            self.conn.execute(psycopg.sql.SQL("LISTEN {}").format(channel))

    def channels(self) -> list[str]:
        return [notify.channel for notify in self.conn.notifies(timeout=0.5, stop_after=10)]


@pytest.fixture
def listener(database: connecting.DatabaseSettings):  # type: ignore[no-untyped-def]
    listening = Listener(database)
    yield listening
    listening.conn.close()


def set_worker(
    db: Database, worker_id: uuid.UUID, idle: int, heartbeat_age: float, state: str = "alive"
) -> None:
    async def update(conn: queries.Connection) -> None:
        await conn.execute(
            "UPDATE pgjobs.workers SET idle_slots = %s, state = %s,"
            " heartbeat_at = now() - make_interval(secs => %s) WHERE id = %s",
            [idle, state, heartbeat_age, worker_id],
        )

    db.call(update)


def listened_idle_worker(db: Database, listener: Listener, idle: int) -> uuid.UUID:
    """A registered worker counting `idle` idle slots, its channel listened to by `listener`."""
    worker = register(db)
    set_worker(db, worker, idle=idle, heartbeat_age=0)
    listener.listen_for(worker)
    return worker


def test_one_new_job_names_the_idle_worker_that_heartbeated_last(
    database: connecting.DatabaseSettings, listener: Listener
) -> None:
    db = Database(database)
    older, newer, busy, dead = (register(db) for _ in range(4))
    elsewhere = register(db, queues=("other",))
    set_worker(db, older, idle=1, heartbeat_age=5)
    set_worker(db, newer, idle=1, heartbeat_age=1)
    set_worker(db, busy, idle=0, heartbeat_age=0)
    set_worker(db, dead, idle=1, heartbeat_age=0, state="dead")
    set_worker(db, elsewhere, idle=1, heartbeat_age=0)
    listener.listen_for(older, newer, busy, dead, elsewhere)
    db.enqueue("noop")
    assert listener.channels() == [workers.wake_channel(newer)]
    db.enqueue("noop", queue="other")
    assert listener.channels() == [workers.wake_channel(elsewhere)]
    set_worker(db, newer, idle=1, heartbeat_age=4.5)  # missed two of its 2 s heartbeats: maybe dead
    db.enqueue("noop")
    assert listener.channels() == ["pgjobs_jobs"], "only workers with a recent heartbeat are chosen"


def test_jobs_added_one_by_one_in_a_transaction_each_wake_the_worker(
    database: connecting.DatabaseSettings, listener: Listener
) -> None:
    db = Database(database)
    worker = listened_idle_worker(db, listener, idle=1)

    async def three_inserts(conn: queries.Connection) -> list[int]:
        async with conn.transaction():
            return [(await jobs.enqueue(conn, NewJob("noop")))[0] for _ in range(3)]

    ids = db.call(three_inserts)
    notified = list(listener.conn.notifies(timeout=0.5, stop_after=10))
    # Identical notifications would be delivered once: each names its job.
    assert [(n.channel, n.payload) for n in notified] == [(workers.wake_channel(worker), str(i)) for i in ids]


def test_a_batch_or_a_job_no_idle_worker_serves_wakes_everyone(
    database: connecting.DatabaseSettings, listener: Listener
) -> None:
    db = Database(database)
    worker = listened_idle_worker(db, listener, idle=2)
    db.enqueue("noop", 2)
    assert listener.channels() == ["pgjobs_jobs"]
    db.enqueue("noop", queue="nobody-serves-this")
    assert listener.channels() == ["pgjobs_jobs"]
    set_worker(db, worker, idle=0, heartbeat_age=0)
    db.enqueue("noop")
    assert listener.channels() == ["pgjobs_jobs"]


CLAIMS = "pgjobs_worker_claim_duration_seconds_count"


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_idle_workers_claim_once_per_job_not_once_each(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    ports = [free_port() for _ in range(3)]
    # A long poll, so that every claim counted below answers a wake-up.
    for port in ports:
        spawn("--metrics-port", str(port), "--poll-interval", "60")
    wait_for(lambda: count_idle(db) == 3, 20, what="three idle workers counted in the database")
    # Each worker claims on starting and again once it listens; nothing more without a wake-up.
    wait_for(
        lambda: all(metric(port, CLAIMS) >= 2 for port in ports), 20, what="each worker's two first claims"
    )
    before = sum(metric(port, CLAIMS) for port in ports)
    for _ in range(10):
        [job_id] = db.enqueue("noop")
        wait_for(lambda job_id=job_id: db.job(job_id).state is JobState.COMPLETED, 10, 0.02, what="the job")
        wait_for(lambda: count_idle(db) == 3, 10, 0.02, what="the worker to be counted idle again")
    after = sum(metric(port, CLAIMS) for port in ports)
    # Waking every listener would make 30 claims (3 per job).
    assert after - before == 10


def test_a_worker_named_while_busy_passes_the_wake_up_on(database, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    busy_port = free_port()
    # Slow heartbeats leave a window in which the busy worker's row wrongly says idle (and keep
    # the other worker's rescue sweep away from it).
    slow = ("--heartbeat-interval", "10", "--stall-timeout", "60", "--poll-interval", "60")
    busy = spawn("--metrics-port", str(busy_port), *slow)
    [long_job] = db.enqueue("record", args={"seconds": 30})
    wait_for(lambda: db.job(long_job).state is JobState.RUNNING, 20, what="the long job to start")
    holder = db.job(long_job).worker_id
    assert holder is not None and str(holder) == worker_id_of(db, busy.pid)
    spawn(*slow)  # idle, and it would find the job only by a wake-up
    wait_for(lambda: count_idle(db) == 1, 20, what="the second worker counted idle")
    set_worker(db, holder, idle=1, heartbeat_age=-60)  # named first, as if idle
    [job_id] = db.enqueue("noop")
    started = time.monotonic()
    wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 10, 0.02, what="the passed-on job")
    assert time.monotonic() - started < 5, "the job waited for a poll, not for the passed-on wake-up"
    assert db.job(job_id).worker_id != holder
    assert metric(busy_port, "pgjobs_worker_wakeups_passed_on_total") == 1.0


def worker_id_of(db: Database, pid: int) -> str:
    found = [str(worker.id) for worker in db.call(workers.list_workers) if worker.pid == pid]
    assert found, f"no worker row for pid {pid}"
    return found[0]


def test_pgjobs_workers_shows_the_idle_slots(database, database_env, spawn) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    spawn("--concurrency", "3")
    wait_for(lambda: count_idle(db) == 3, 20, what="three idle slots counted")
    listed = pgjobs(database_env, "workers", "--json")
    assert listed.returncode == 0, listed.stderr
    [shown] = json.loads(listed.stdout)
    assert (shown["idle_slots"], shown["running_jobs"], shown["concurrency"]) == (3, 0, 3)
    table = pgjobs(database_env, "workers").stdout
    header, row = table.splitlines()[:2]
    assert "IDLE" in header.split() and row.split()[header.split().index("IDLE")] == "3"
