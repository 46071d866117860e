"""Mixed worker fleets against a real PostgreSQL: workers with different task modules on one queue
claim only the jobs they can run, the enqueue trigger wakes only a worker that can run the new
job, and a job no live worker can run stays Pending and is marked (then unmarked) for all to see."""

from __future__ import annotations

import time
import uuid

import pytest

from pgjobs.states import JobState
from pgjobs.store import connecting, jobs, workers
from tests.fleet_tasks import drain_claiming_any_task
from tests.integration.test_wakeups import Listener, listener, set_worker
from tests.processes import Database, Ledger, pgjobs, wait_for

pytestmark = pytest.mark.integration
__all__ = ["listener"]  # the fixture, used below

POOL_A = ("--tasks", "tests.fleet_tasks.pool_a")
POOL_B = ("--tasks", "tests.fleet_tasks.pool_b")


def worker_row(db: Database, pid: int) -> set[str] | None:
    [found] = [w for w in db.call(workers.list_workers) if w.pid == pid]
    return None if found.tasks is None else set(found.tasks)


def test_two_pools_on_one_queue_each_run_only_their_own_tasks(database, spawn, ledger: Ledger) -> None:  # type: ignore[no-untyped-def]
    db = Database(database)
    # The first pending rows are all of pool B's task: pool A's claims step over them.
    b_first = db.enqueue("only_b", 20, priority=2, max_attempts=1)
    mixed = [db.enqueue(task, max_attempts=1)[0] for task in ("only_a", "only_b") * 10]
    pool_a = spawn(*POOL_A, "--concurrency", "2")
    pool_b = spawn(*POOL_B, "--concurrency", "2")
    everything = b_first + mixed
    wait_for(
        lambda: all(db.job(job_id).state.is_finished for job_id in everything), 60, what="every job to end"
    )
    assert {db.job(job_id).state for job_id in everything} == {JobState.COMPLETED}, [
        (job.id, job.task, job.message) for job in (db.job(i) for i in everything) if job.message
    ]
    ran_on = {job_id: pid for job_id, _, pid in ledger.events("only_a") + ledger.events("only_b")}
    assert {job_id for job_id, _, _ in ledger.events("only_a")} == set(mixed[0::2])
    assert {ran_on[job_id] for job_id in mixed[0::2]} == {pool_a.pid}
    assert {ran_on[job_id] for job_id in b_first + mixed[1::2]} == {pool_b.pid}
    assert "unknown task" not in pool_a.output() + pool_b.output()
    assert "only_a" in (worker_row(db, pool_a.pid) or set()) and "only_b" not in (
        worker_row(db, pool_a.pid) or set()
    )


def test_the_enqueue_trigger_wakes_only_a_worker_that_can_run_the_task(
    database: connecting.DatabaseSettings, listener: Listener
) -> None:
    db = Database(database)

    def register(tasks: tuple[str, ...] | None) -> uuid.UUID:
        worker_id = uuid.uuid4()
        db.call(lambda conn: workers.register(conn, worker_id, "test", 1, ["default"], 2, tasks=tasks))
        return worker_id

    pool_a, pool_b, older = register(("only_a",)), register(("only_b",)), register(None)
    set_worker(db, pool_a, idle=1, heartbeat_age=0)
    set_worker(db, pool_b, idle=1, heartbeat_age=1)
    set_worker(db, older, idle=0, heartbeat_age=0)
    listener.listen_for(pool_a, pool_b, older)
    db.enqueue("only_b")
    assert listener.channels() == [workers.wake_channel(pool_b)]
    db.enqueue("only_a")
    assert listener.channels() == [workers.wake_channel(pool_a)]
    db.enqueue("only_c")
    assert listener.channels() == ["pgjobs_jobs"], "no idle worker can run it: everyone hears of it"
    set_worker(db, older, idle=1, heartbeat_age=0)  # a worker of older code: it claims any task
    db.enqueue("only_c")
    assert listener.channels() == [workers.wake_channel(older)]


def test_a_worker_claims_only_its_tasks_and_none_is_any(database: connecting.DatabaseSettings) -> None:
    db = Database(database)
    worker = uuid.uuid4()
    [other, mine] = [db.enqueue(task)[0] for task in ("only_b", "only_a")]

    def claim(tasks: list[str] | None) -> int | None:
        job = db.call(lambda conn: jobs.claim(conn, worker, ["default"], tasks=tasks))
        return None if job is None else job.id

    assert claim(["only_a", "noop"]) == mine
    assert claim(["only_a", "noop"]) is None and claim([]) is None
    assert claim(None) == other


def no_worker_since(db: Database, job_id: int) -> object:
    return db.job(job_id).no_worker_since


def test_a_job_no_worker_can_run_waits_is_marked_after_the_delay_and_unmarked_by_a_worker(  # type: ignore[no-untyped-def]
    database, database_env, spawn, ledger: Ledger
) -> None:
    db = Database(database)
    delay = 1.5

    def mark(after: float = delay) -> tuple[int, int]:
        return db.call(lambda conn: jobs.mark_no_worker(conn, after))

    spawn(*POOL_A)  # serves the queue, but not the task
    [job_id] = db.enqueue("only_c", max_attempts=1)
    [runs] = db.enqueue("only_a")
    wait_for(lambda: db.job(runs).state is JobState.COMPLETED, 30, what="pool A's own job")
    assert mark(60) == (0, 0), "marked before its delay"
    time.sleep(delay)
    assert mark() == (1, 0) and mark() == (0, 0)
    job = db.job(job_id)
    assert job.state is JobState.PENDING and job.no_worker_since is not None and job.attempt == 0
    listing = pgjobs(database_env, "jobs").stdout
    assert "no worker for task only_c on queue default" in listing, listing
    assert pgjobs(database_env, "jobs", "--json").stdout.count('"no_worker_since": null') >= 1

    pool_c = spawn("--tasks", "tests.fleet_tasks.pool_c")
    wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 30, what="pool C to run the job")
    # Pool C took the mark off when it registered (the claim skips marked jobs): none is left.
    assert mark() == (0, 0) and no_worker_since(db, job_id) is None
    assert [pid for ran, _, pid in ledger.events("only_c") if ran == job_id] == [pool_c.pid]


def test_a_worker_seen_within_the_delay_keeps_the_job_unmarked_and_a_live_one_clears_it(
    database: connecting.DatabaseSettings,
) -> None:
    """A fleet restarting (the only worker that can run the task stopped a moment ago) is not "no
    worker"; a mark is cleared by a live worker that can run the job even while it stays Pending
    (every slot busy)."""
    db = Database(database)
    worker = uuid.uuid4()
    db.call(lambda conn: workers.register(conn, worker, "test", 1, ["default"], 1, tasks=["only_c"]))
    db.call(lambda conn: workers.deregister(conn, worker))
    [job_id] = db.enqueue("only_c")
    time.sleep(1.0)
    assert db.call(lambda conn: jobs.mark_no_worker(conn, 0.5)) == (1, 0), "stopped 1 s ago, delay 0.5 s"
    assert db.call(lambda conn: jobs.mark_no_worker(conn, 0.5)) == (0, 0)
    db.call(lambda conn: workers.heartbeat(conn, worker))  # alive again, not claiming
    assert db.call(lambda conn: jobs.mark_no_worker(conn, 0.5)) == (0, 1)
    assert db.job(job_id).state is JobState.PENDING and no_worker_since(db, job_id) is None
    db.call(lambda conn: workers.deregister(conn, worker))
    assert db.call(lambda conn: jobs.mark_no_worker(conn, 60)) == (0, 0), "seen within the delay"


def test_a_worker_claiming_any_task_still_fails_an_unknown_one_at_once(
    database: connecting.DatabaseSettings,
) -> None:
    """What a worker of code from before task filtering does (it claims any task) is unchanged: a
    job of a task it does not know fails at once, naming the task but not the tasks the worker
    knows (which a shared pool's tenants need not learn), and is not retried."""
    db = Database(database)
    [job_id] = db.enqueue("no_such_task")
    worker = drain_claiming_any_task(database)
    job = db.job(job_id)
    assert job.state is JobState.FAILED and job.attempt == 1, job
    assert "unknown task 'no_such_task'" in (job.message or "")
    assert "sleep" not in (job.message or "") and "noop" not in (job.message or "")
    [row] = [w for w in db.call(lambda c: workers.list_workers(c, include_gone=True)) if w.id == worker.id]
    assert row.tasks is None
