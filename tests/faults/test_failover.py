"""Failover to a streaming standby while PgJobs drain: the primary dies (immediate shutdown), the
standby is promoted, and the operator and workers find it through a libpq multi-host URL.

Three variants. With synchronous replication nothing a client saw committed is lost, so every
job runs exactly once. With asynchronous replication the last commits may be lost, so a job may
run again (at-least-once), but none is lost; a standby on the same machine is milliseconds
behind, so the third variant cuts it off a second before the primary fails, to lose commits for
certain. Each prints its figures: how long after the promotion the first job completed on the
new primary, and how many jobs ran again."""

from __future__ import annotations

import asyncio
import datetime
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pgjobs.devenv import postgres, replication
from pgjobs.states import JobState
from pgjobs.store import connecting, migrating
from tests.e2e.operator_helpers import Services, query, wait_until
from tests.faults.test_operator_faults import Run, assert_no_crash, pgjobs_of, rows_with_workers

JOBS = 120
WORKERS, SLOTS = 2, 4
#: Seconds the PgJobs may lag behind their rows once every row completed: the status sync's
#: interval is 0.1 s, but it waits for the operator to lead again on the new primary.
STATUS_LAG = 10.0
#: Seconds of commits the lagging standby misses.
LAG = 1.0

Json = dict[str, Any]


@pytest.fixture(params=["synchronous", "asynchronous", "lagging"])
def variant(request: pytest.FixtureRequest) -> str:
    """How the standby follows: synchronously, asynchronously, or asynchronously and cut off
    `LAG` seconds before the primary fails (what a slow network does to asynchronous replication)."""
    return str(request.param)


@pytest.fixture
def standby(variant: str) -> Iterator[replication.Standby]:
    """A durable primary (fsync and synchronous_commit on, as in production) and its standby."""
    with (
        postgres.PostgresServer(durable=True, max_connections=100) as primary,
        replication.Standby(primary) as copy,
    ):
        if variant == "synchronous":
            replication.make_synchronous(copy)
        yield copy


@pytest.fixture
def database(standby: replication.Standby) -> connecting.DatabaseSettings:
    """The test database through both servers: libpq takes whichever accepts writes."""
    hosts = f"127.0.0.1:{standby.primary.port},127.0.0.1:{standby.port}"
    url = f"postgresql://{postgres.SUPERUSER}@{hosts}/failover?target_session_attrs=read-write"
    settings = connecting.DatabaseSettings(url=url, password=standby.primary.password)
    asyncio.run(migrating.migrate(settings))
    return settings


@pytest.fixture
def run(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> Iterator[Run]:
    scenario = Run(kube, namespace, services, database)
    try:
        yield scenario
    finally:
        scenario.close()


def first_completion_after(database: connecting.DatabaseSettings, moment: datetime.datetime) -> float | None:
    """Seconds from `moment` to the first job finished after it, None while there is none."""
    [row] = query(
        database, "SELECT min(finished_at) AS first FROM pgjobs.jobs WHERE finished_at >= %s", moment
    )
    first = row["first"]
    return None if first is None else (first - moment).total_seconds()


def completed_rows(database: connecting.DatabaseSettings) -> int:
    [row] = query(database, "SELECT count(*) AS n FROM pgjobs.jobs WHERE state = 'completed'")
    return int(row["n"])


def statuses_matching_rows(run: Run) -> list[Json]:
    """The rows, once every one is Completed, copied to its PgJob, and its PgJob's status agrees."""
    wait_until(
        lambda: all(row["change_count"] == row["synced_count"] for row in rows_with_workers(run.database)),
        timeout=30,
        what="every row's changes copied to its PgJob",
    )
    rows = rows_with_workers(run.database)
    items = {item["metadata"]["uid"]: item for item in pgjobs_of(run.kube, run.namespace)}
    assert sorted(row["uid"] for row in rows) == sorted(items), "rows and PgJobs differ (lost or orphaned)"
    for row in rows:
        status = items[row["uid"]]["status"]
        seen = (status["phase"], status["attempts"], status["jobId"])
        assert row["state"] == JobState.COMPLETED.value, row
        assert seen == ("Completed", row["attempt"], row["id"]), (status, row)
    return rows


def test_failover_to_a_standby_mid_drain(run: Run, standby: replication.Standby, variant: str) -> None:
    rng = random.Random(21)
    operator = run.services.operator()
    workers = [
        run.services.worker(f"worker-{i}", "--tasks", "tests.sample_tasks", "--concurrency", str(SLOTS))
        for i in range(WORKERS)
    ]
    run.create(JOBS, "job", rng)
    wait_until(
        lambda: len(run.ledger.events("done")) >= JOBS // 3, timeout=60, what="a third of the jobs run"
    )

    if variant == "lagging":
        standby.detach()
        time.sleep(LAG)  # jobs are claimed and completed on the primary alone
    crashed = time.monotonic()
    standby.primary.crash()
    replication.promote(standby)
    promoted, promoted_at = time.monotonic(), datetime.datetime.now(datetime.UTC)
    recovered = wait_until(
        lambda: first_completion_after(run.database, promoted_at),
        timeout=60,
        what="a job completed on the new primary",
    )
    wait_until(lambda: completed_rows(run.database) == JOBS, timeout=60, what="every row completed")
    rows_done = time.monotonic() - promoted
    run.wait_completed(timeout=60)
    statuses_done = time.monotonic() - promoted
    run.close()
    rows = statuses_matching_rows(run)

    starts, done = run.ledger.count("start"), run.ledger.count("done")
    ids = {row["id"] for row in rows}
    assert set(done) == ids, f"never completed by their task: {sorted(ids - set(done))[:10]}"
    rerun = {job_id: count for job_id, count in starts.items() if count > 1}
    figures = {
        "replication": variant,
        "jobs": len(rows),
        "crash to promoted (s)": round(promoted - crashed, 2),
        "promoted to first completion (s)": round(recovered, 2),
        "promoted to every row completed (s)": round(rows_done, 2),
        "promoted to every PgJob Completed (s)": round(statuses_done, 2),
        "jobs re-run": len(rerun),
        "extra runs": sum(count - 1 for count in rerun.values()),
        "attempts": sum(row["attempt"] for row in rows),
        "seconds": round(time.monotonic() - run.started, 1),
    }
    print(f"failover figures: {figures}")
    if variant == "synchronous":
        assert not rerun, f"jobs ran more than once with synchronous replication: {rerun}; {figures}"
        assert sum(done.values()) == len(rows), figures
    if variant == "lagging":  # the window is real: the jobs claimed or completed in it ran again
        assert rerun, f"no job ran again though {LAG}s of commits were lost: {figures}"
    assert statuses_done - rows_done < STATUS_LAG, f"statuses lagged behind the rows: {figures}"
    assert "did not stop" not in operator.text(), "the operator's step-down timed out"
    assert not run.orphans, f"Running without a live worker: {run.orphans[:5]}"
    assert operator.alive() and all(worker.alive() for worker in workers), "a pgjobs process exited"
    assert_no_crash(operator, *workers)
