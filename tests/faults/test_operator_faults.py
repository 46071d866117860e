"""Fault injection through Kubernetes: PgJobs run while workers, operators, PostgreSQL and the API
server are killed, restarted or frozen.

Invariants checked after every scenario (`Run.check`):

- every PgJob ends Completed;
- the task itself (tests.sample_tasks `record`, ledger file) recorded exactly one completion per
  job; a second one is allowed only when the executor of the first was killed with SIGKILL after
  the task ended but before its completion was written (at-least-once execution, exactly-once
  completion) — only scenario (a) kills executors;
- no job is Running for long without a live (heartbeating) worker: sampled during the run and
  checked at the end;
- every PgJob's status agrees with its row (phase, attempts, worker, jobId) once the status sync
  caught up;
- no row without a PgJob and no PgJob without a row.

Sizes fit CI (about 120 PgJobs, 3 to 4 workers); `PGJOBS_SOAK=1` (`make soak`) scales them up.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from pgjobs.devenv import postgres
from pgjobs.states import JobState
from pgjobs.store import connecting
from tests.e2e.operator_helpers import (
    GROUP,
    PLURAL,
    VERSION,
    Process,
    Services,
    create,
    pgjob,
    query,
    running_worker,
    wait_until,
    worker_pid,
)
from tests.processes import ROOT, Ledger

pytestmark = pytest.mark.e2e

SOAK = os.environ.get("PGJOBS_SOAK") == "1"
JOBS = 1_000 if SOAK else 120
#: Task lengths in seconds, mixed: instant, short, medium, long.
LENGTHS = (0.0, 0.05, 0.3, 1.0)
STALL_TIMEOUT = 3.0  # as in operator_helpers.WORKER_ARGS / OPERATOR_ARGS
#: A Running job whose worker has been silent this long was missed by the rescue (stall timeout,
#: the sweep interval, the leader's warm-up after a takeover, and slack for a loaded machine).
RESCUE_LIMIT = STALL_TIMEOUT * 4
RUN_TIMEOUT = 600 if SOAK else 150

Json = dict[str, Any]


def record_job(name: str, seconds: float) -> Json:
    return pgjob(name, "record", args={"seconds": seconds}, maxAttempts=50, backoffSeconds=0)


def pgjobs_of(kube: Any, namespace: str) -> list[Json]:
    listing: Json = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return list(listing["items"])


def rows_with_workers(database: connecting.DatabaseSettings) -> list[Json]:
    return query(
        database,
        "SELECT j.id, j.state::text AS state, j.attempt, j.resource_uid::text AS uid, j.resource_name,"
        " j.change_count, j.synced_count, w.hostname AS worker_name"
        " FROM pgjobs.jobs j LEFT JOIN pgjobs.workers w ON w.id = j.worker_id ORDER BY j.id",
    )


@dataclass
class Run:
    """One scenario: its PgJobs, the ledger its tasks write, the processes it killed."""

    kube: Any
    namespace: str
    services: Services
    database: connecting.DatabaseSettings
    ledger: Ledger = field(default_factory=Ledger)
    names: list[str] = field(default_factory=list)
    #: pids of workers killed with SIGKILL: only they may leave a second completion behind.
    killed: set[int] = field(default_factory=set)
    #: (job id, seconds silent) of Running jobs seen without a live worker for too long.
    orphans: list[tuple[int, float]] = field(default_factory=list)
    worker_count: int = 0
    started: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)
    _monitor: threading.Thread | None = None

    def __post_init__(self) -> None:
        # The sample tasks, and the ledger they record their runs in.
        self.services.env.update(
            PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PGJOBS_TEST_LEDGER=str(self.ledger.path)
        )
        self._monitor = threading.Thread(target=self._watch_orphans, daemon=True)
        self._monitor.start()

    def worker(self) -> Process:
        self.worker_count += 1
        return self.services.worker(f"worker-{self.worker_count}", "--tasks", "tests.sample_tasks")

    def create(self, count: int, prefix: str, rng: random.Random) -> None:
        bodies = [record_job(f"{prefix}-{i}", rng.choice(LENGTHS)) for i in range(count)]
        create(self.kube, self.namespace, *bodies)
        self.names += [body["metadata"]["name"] for body in bodies]

    def completed(self) -> int:
        return sum(
            1
            for item in pgjobs_of(self.kube, self.namespace)
            if (item.get("status") or {}).get("phase") == "Completed"
        )

    def wait_completed(self, at_least: int | None = None, timeout: float = RUN_TIMEOUT) -> None:
        target = len(self.names) if at_least is None else at_least
        try:
            wait_until(lambda: self.completed() >= target, timeout=timeout, what=f"{target} PgJobs Completed")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.unfinished()}") from None

    def unfinished(self) -> str:
        """The PgJobs not Completed yet and their rows: what a timed-out wait reports."""
        rows = {row["uid"]: row for row in rows_with_workers(self.database)}
        lines = []
        for item in pgjobs_of(self.kube, self.namespace):
            status, meta = item.get("status") or {}, item["metadata"]
            if status.get("phase") != "Completed":
                row = rows.get(meta["uid"])
                keys = ("id", "state", "attempt", "change_count", "synced_count")
                shown = row and {key: row[key] for key in keys}
                lines.append(
                    f"  {meta['name']}: phase {status.get('phase')}, finalizers {meta.get('finalizers')},"
                    f" generation {meta.get('generation')}/{status.get('observedGeneration')},"
                    f" annotations {meta.get('annotations')}, row {shown},"
                    f" status { ({k: status.get(k) for k in ('jobId', 'attempts', 'syncedAt', 'message')}) }"
                )
        return "PgJobs not Completed:\n" + "\n".join(lines[:20])

    def _watch_orphans(self) -> None:
        while not self._stop.wait(1.0):
            try:
                found = query(
                    self.database,
                    "SELECT j.id, extract(epoch FROM now() - greatest(j.started_at,"
                    " coalesce(w.heartbeat_at, j.started_at)))::float8 AS silent"
                    " FROM pgjobs.jobs j LEFT JOIN pgjobs.workers w ON w.id = j.worker_id"
                    " WHERE j.state = 'running' AND (w.id IS NULL OR w.state <> 'alive'"
                    "   OR w.heartbeat_at < now() - make_interval(secs => %s))",
                    RESCUE_LIMIT,
                )
            except Exception:  # PostgreSQL restarts in some scenarios: look again
                continue
            self.orphans += [(row["id"], row["silent"]) for row in found if row["silent"] > RESCUE_LIMIT]

    def close(self) -> None:
        self._stop.set()
        if self._monitor:
            self._monitor.join(5)

    # -- the invariants ---------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """Assert the invariants; returns figures for the report."""
        self.wait_completed()
        self.close()
        items = {item["metadata"]["name"]: item for item in pgjobs_of(self.kube, self.namespace)}
        assert sorted(items) == sorted(self.names), "a PgJob disappeared or appeared"
        phases = collections.Counter((item.get("status") or {}).get("phase") for item in items.values())
        assert phases == {"Completed": len(self.names)}, phases

        # The status sync catches up; then every status agrees with its row.
        wait_until(
            lambda: all(
                row["change_count"] == row["synced_count"] for row in rows_with_workers(self.database)
            ),
            timeout=30,
            what="every row's changes copied to its PgJob",
        )
        rows = rows_with_workers(self.database)
        items = {item["metadata"]["name"]: item for item in pgjobs_of(self.kube, self.namespace)}
        by_uid = {item["metadata"]["uid"]: item for item in items.values()}
        assert sorted(row["uid"] for row in rows) == sorted(by_uid), "rows and PgJobs differ (orphan/missing)"
        assert len({row["uid"] for row in rows}) == len(rows), "two rows for one PgJob"
        for row in rows:
            item = by_uid[row["uid"]]
            status = item["status"]
            assert row["resource_name"] == item["metadata"]["name"]
            assert row["state"] == JobState.COMPLETED.value, row
            seen = (status["phase"], status["attempts"], status["jobId"])
            assert seen == (JobState(row["state"]).phase, row["attempt"], row["id"]), (item, row)
            if row["worker_name"] is not None:  # a pruned worker row leaves the status as it was
                assert status["worker"] == row["worker_name"], (status, row)
            assert status["worker"], status

        # Counted by the task itself: one completion per job, a second only after a kill -9.
        done: dict[int, list[int]] = collections.defaultdict(list)
        for job_id, _attempt, pid in self.ledger.events("done"):
            done[job_id].append(pid)
        ids = {row["id"] for row in rows}
        assert set(done) == ids, f"tasks never completed for {sorted(ids - set(done))[:10]}"
        twice = {job_id: pids for job_id, pids in done.items() if len(pids) > 1}
        for job_id, pids in twice.items():
            assert set(pids[:-1]) <= self.killed, f"job {job_id} completed by live workers {pids}"
        assert not self.orphans, f"Running without a live worker past {RESCUE_LIMIT}s: {self.orphans[:5]}"
        assert (
            query(self.database, "SELECT count(*) AS n FROM pgjobs.jobs WHERE state = 'running'")[0]["n"] == 0
        )
        figures = {
            "jobs": len(self.names),
            "attempts": sum(row["attempt"] for row in rows),
            "completed twice (executor killed)": len(twice),
            "seconds": round(time.monotonic() - self.started, 1),
        }
        print(f"figures: {figures}")
        return figures


@pytest.fixture
def run(kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings) -> Any:
    scenario = Run(kube, namespace, services, database)
    try:
        yield scenario
    finally:
        scenario.close()


def assert_no_crash(*processes: Process) -> None:
    for process in processes:
        assert "Traceback" not in process.text(), f"{process.name} logged a traceback"


def test_workers_killed_at_random(run: Run) -> None:
    """(a) kill -9 of a random worker every 1 to 3 s while the PgJobs run; a fresh one replaces it."""
    rng = random.Random(11)
    operator = run.services.operator()
    workers = [run.worker() for _ in range(4)]
    run.create(JOBS, "job", rng)
    while run.completed() < JOBS:
        time.sleep(rng.uniform(1.0, 3.0))
        victim = workers.pop(rng.randrange(len(workers)))
        victim.kill()
        run.killed.add(victim.pid)
        workers.append(run.worker())
        assert len(run.killed) < 150, "no progress"
    figures = run.check()
    assert len(run.killed) >= 3, f"too few kills to mean anything: {len(run.killed)}"
    # Killed workers cost attempts: some job ran more than once.
    assert figures["attempts"] > JOBS
    assert operator.alive()
    print(f"workers killed: {len(run.killed)}")


def test_operator_killed_and_restarted_repeatedly(run: Run) -> None:
    """(b) the operator is killed (-9) and restarted four times while PgJobs run and arrive."""
    rng = random.Random(12)
    operator = run.services.operator("operator-1")
    workers = [run.worker() for _ in range(3)]
    run.create(JOBS // 2, "first", rng)
    kills = 0
    for round_ in range(4):
        wait_until(lambda: run.completed() >= 1, timeout=60, what="progress")
        time.sleep(rng.uniform(1.0, 2.5))
        operator.kill()
        kills += 1
        # While it is down: new PgJobs (no rows yet) and jobs finishing (statuses behind).
        run.create(JOBS // 8, f"down-{round_}", rng)
        time.sleep(rng.uniform(0.5, 2.0))
        operator = run.services.operator(f"operator-{round_ + 2}")
    run.check()
    assert kills == 4 and operator.alive()
    assert all(worker.alive() for worker in workers)
    assert_no_crash(operator, *workers)


def leads(process: Process) -> int:
    return process.text().count("now leads")


def test_two_operators_leader_killed(run: Run) -> None:
    """(c) two operator replicas; the leader is killed mid-run, the other one takes over."""
    rng = random.Random(13)
    first, second = run.services.operator("operator-a"), run.services.operator("operator-b")
    workers = [run.worker() for _ in range(3)]
    wait_until(lambda: leads(first) + leads(second) == 1, timeout=20, what="a leader")
    leader, follower = (first, second) if leads(first) else (second, first)
    run.create(JOBS, "job", rng)
    run.wait_completed(at_least=JOBS // 4)
    leader.kill()
    run.create(JOBS // 4, "after", rng)
    wait_until(lambda: leads(follower) == 1, timeout=20, what="takeover")
    run.check()
    assert follower.alive() and all(worker.alive() for worker in workers)
    assert_no_crash(follower, *workers)


def test_postgres_restarted_mid_run(run: Run, postgres_server: postgres.PostgresServer) -> None:
    """(d) PostgreSQL restarted while the operator and workers run; nothing lost or run twice."""
    rng = random.Random(14)
    operator = run.services.operator()
    workers = [run.worker() for _ in range(4)]
    run.create(JOBS, "job", rng)
    run.wait_completed(at_least=JOBS // 3)
    postgres_server.restart()
    run.create(JOBS // 4, "after", rng)
    run.check()
    assert operator.alive() and all(worker.alive() for worker in workers)


def test_api_server_restarted_mid_run(run: Run, controlplane: Any) -> None:
    """(e) kube-apiserver down for 3 s and back mid-run: watches resume, statuses catch up."""
    if not hasattr(controlplane, "restart_apiserver"):
        pytest.skip("an existing cluster's API server cannot be restarted by the tests")
    rng = random.Random(15)
    operator = run.services.operator()
    workers = [run.worker() for _ in range(4)]
    run.create(JOBS, "job", rng)
    run.wait_completed(at_least=JOBS // 4)
    controlplane.stop_apiserver()
    time.sleep(3)  # jobs finish in PostgreSQL while no status can be written
    controlplane.restart_apiserver()
    run.create(JOBS // 4, "after", rng)
    run.check()
    assert operator.alive() and all(worker.alive() for worker in workers)
    assert_no_crash(operator, *workers)


def test_frozen_worker_is_rescued_and_its_late_writes_refused(run: Run) -> None:
    """(f) a worker frozen (SIGSTOP) past the stall timeout while running a job, then resumed."""
    rng = random.Random(16)
    run.services.operator()
    workers = [run.worker(), run.worker()]
    create(run.kube, run.namespace, record_job("frozen", 8.0))
    run.names.append("frozen")
    [row] = wait_until(
        lambda: [r for r in rows_with_workers(run.database) if r["state"] == "running"], what="frozen Running"
    )
    uid = row["uid"]
    frozen_pid = worker_pid(run.database, running_worker(run.database, uid))
    frozen = next(worker for worker in workers if worker.pid == frozen_pid)
    other = next(worker for worker in workers if worker is not frozen)
    time.sleep(0.5)
    frozen.popen.send_signal(signal.SIGSTOP)
    try:
        run.create(30, "job", rng)  # the other worker runs these meanwhile
        # Rescued after the stall timeout, then claimed again: by the other worker, attempt 2.
        wait_until(
            lambda: (row["id"], 2, other.pid) in run.ledger.events("start"),
            timeout=40,
            what="rescued job started",
        )
    finally:
        frozen.popen.send_signal(signal.SIGCONT)
    run.check()
    [again] = [r for r in rows_with_workers(run.database) if r["uid"] == uid]
    assert (again["attempt"], again["worker_name"]) == (2, other.name), again
    done = [pid for job_id, _attempt, pid in run.ledger.events("done") if job_id == row["id"]]
    assert done == [other.pid], f"the frozen job completed by {done}"
    log = frozen.text()
    assert "presumed dead" in log, log[-2000:]
    # Its writes about the job after the freeze were refused or withheld: the job is not its own any
    # more ("Job N abandoned: the job is no longer held by this worker", or "Job N: completion
    # refused, ..." had the task ended before the worker noticed), and it never completed it.
    assert f"Job {row['id']}" in log and "no longer held by this worker" in log, log[-2000:]
    assert f"Job {row['id']} completed in" not in log, log[-2000:]
    assert frozen.alive(), "the resumed worker exited"
    # It is back in the fleet: heartbeating again, and alive in the database.
    wait_until(
        lambda: query(
            run.database,
            "SELECT 1 FROM pgjobs.workers WHERE pid = %s AND state = 'alive'"
            " AND heartbeat_at > now() - interval '2 seconds'",
            frozen.pid,
        ),
        timeout=10,
        what="the resumed worker heartbeating",
    )
    assert_no_crash(frozen, other)
