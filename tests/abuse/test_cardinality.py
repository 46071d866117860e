"""Metrics cardinality: jobs of thousands of unknown tasks (left Pending by a real worker, failed
by one that claims any task), and rows in thousands of queues, add no label values beyond a bound."""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any

import prometheus_client
import pytest

from pgjobs.operator import metrics as operator_metrics
from pgjobs.states import FINISHED_STATES, JobState
from pgjobs.store import connecting, jobs
from pgjobs.store.records import NewJob
from pgjobs.worker import metrics as worker_metrics
from tests.fleet_tasks import drain_claiming_any_task
from tests.processes import Database, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

UNKNOWN_TASKS = 2_000
UNFINISHED = [state for state in JobState if state not in FINISHED_STATES]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unknown_task_names_share_one_label_value(
    database: connecting.DatabaseSettings, database_env: dict[str, str]
) -> None:
    """A current worker leaves jobs of tasks it does not know Pending (for a worker that has them)
    and its page shows none of their names; a worker that claims them anyway (one of code from
    before task filtering: drain_claiming_any_task) fails them all under one label value."""
    db = Database(database)

    async def enqueue_many(conn: Any) -> None:
        for number in range(UNKNOWN_TASKS):
            await jobs.enqueue(conn, NewJob(task=f"unknown_{number}", max_attempts=1))

    db.call(enqueue_many)
    port = free_port()
    worker = WorkerProcess(database_env, extra=["--metrics-port", str(port)])
    try:
        wait_for(
            lambda: "pgjobs_worker_slots" in _page(port), timeout=60, interval=0.5, what="the worker's page"
        )
        time.sleep(1.5)  # a few polls: nothing of theirs is claimed
        page = _page(port)
        assert worker.process.poll() is None, worker.output()[-3000:]
    finally:
        worker.stop()
    assert "unknown_1" not in page and len(page) < 100_000, len(page)
    assert {job.state for job in db.call(lambda c: jobs.list_jobs(c, None, 100_000))} == {JobState.PENDING}

    drain_claiming_any_task(database)
    assert {job.state for job in db.call(lambda c: jobs.list_jobs(c, None, 100_000))} == {JobState.FAILED}
    page = prometheus_client.generate_latest().decode()
    assert "unknown_1" not in page
    assert f'task="{worker_metrics.UNKNOWN_TASK}"' in page
    assert len(page) < 100_000, len(page)
    failed = db.call(lambda c: jobs.list_jobs(c, None, 1))[0]
    # The reason names the task, not every task the worker knows (other tenants' among them).
    assert failed.message and "unknown task" in failed.message and "sleep" not in failed.message


def _page(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return ""


def test_job_counts_keep_a_bounded_number_of_queues() -> None:
    rows = [
        {"state": "pending", "priority": 1, "queue": f"q{number}", "jobs": number} for number in range(500)
    ]
    operator_metrics.set_job_counts(rows)
    queues = {sample.labels["queue"] for sample in operator_metrics.JOBS.collect()[0].samples}
    assert len(queues) == operator_metrics.MAX_QUEUE_LABELS + 1
    assert "q499" in queues and "q0" not in queues and operator_metrics.OTHER_QUEUES in queues
    total = sum(sample.value for sample in operator_metrics.JOBS.collect()[0].samples)
    assert total == sum(range(500))
