"""Fault injection at the queue level: workers killed at random, PostgreSQL away for 30 seconds.

Invariants after every scenario: every job is Completed; the task itself recorded a completion
for every job; a job's task completed twice only when its first executor was killed between the
task's end and the recording of it (at-least-once execution, exactly-once completion); no job is
left Running. `make soak` (PGJOBS_SOAK=1) runs the long versions.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time

import pytest

from pgjobs.states import JobState
from pgjobs.store import connecting, jobs
from tests.processes import Database, Ledger, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

SOAK = os.environ.get("PGJOBS_SOAK") == "1"
FAULT_WORKER = ("--stall-timeout", "3", "--heartbeat-interval", "0.5", "--log-level", "warning")


def states(db: Database) -> collections.Counter[JobState]:
    found = db.call(lambda conn: jobs.list_jobs(conn, limit=1_000_000))
    return collections.Counter(job.state for job in found)


def assert_invariants(db: Database, ledger: Ledger, ids: list[int], killed: set[int]) -> None:
    counts = states(db)
    assert counts == {JobState.COMPLETED: len(ids)}, f"not every job completed: {counts}"
    done = ledger.events("done")
    per_job = collections.defaultdict(list)
    for job_id, _attempt, pid in done:
        per_job[job_id].append(pid)
    assert set(per_job) == set(ids), "a job completed in the database but its task never finished"
    for job_id, pids in per_job.items():
        if len(pids) > 1:
            assert set(pids[:-1]) <= killed, (
                f"job {job_id} completed twice without its executor dying: {pids}"
            )


def test_workers_killed_at_random_lose_nothing(
    database: connecting.DatabaseSettings, database_env: dict[str, str]
) -> None:
    db, ledger, rng = Database(database), Ledger(), random.Random(7)
    total = 10_000 if SOAK else 2_000
    ids: list[int] = []
    for seconds in (0.0, 0.01, 0.05):
        ids += db.enqueue("record", total // 3, args={"seconds": seconds}, backoff_seconds=0, max_attempts=10)
    workers = [WorkerProcess(database_env, ledger, FAULT_WORKER) for _ in range(4)]
    killed: set[int] = set()
    try:
        while states(db).get(JobState.COMPLETED, 0) < len(ids):
            time.sleep(rng.uniform(1.0, 3.0))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.signal(signal.SIGKILL)
            victim.wait()
            killed.add(victim.pid)
            workers.append(WorkerProcess(database_env, ledger, FAULT_WORKER))
            assert len(killed) < 200, "the queue made no progress"
        assert killed, "no worker was killed: the scenario did not run"
        assert_invariants(db, ledger, ids, killed)
    finally:
        for worker in workers:
            worker.stop()


def test_database_unreachable_for_thirty_seconds(
    postgres_server,
    database: connecting.DatabaseSettings,  # type: ignore[no-untyped-def]
    database_env: dict[str, str],
) -> None:
    db, ledger = Database(database), Ledger()
    quick = db.enqueue("record", 200, args={"seconds": 0.02}, backoff_seconds=0)
    slow = db.enqueue("record", 4, args={"seconds": 20}, backoff_seconds=0)
    ids = quick + slow
    settings = ("--stall-timeout", "10", "--heartbeat-interval", "1", "--log-level", "info")
    workers = [WorkerProcess(database_env, ledger, settings) for _ in range(4)]
    try:
        wait_for(lambda: len(ledger.count("start")) >= 50, 60, what="work under way")
        postgres_server.stop()
        outage_started = time.monotonic()
        time.sleep(30)
        assert all(worker.process.poll() is None for worker in workers), "a worker died in the outage"
        postgres_server.start()
        assert time.monotonic() - outage_started >= 30
        wait_for(
            lambda: states(db).get(JobState.COMPLETED, 0) == len(ids),
            120,
            interval=0.5,
            what="every job to complete after the outage",
        )
        assert_invariants(db, ledger, ids, killed=set())
        assert any("lost the database" in worker.output() for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
