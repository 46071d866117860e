"""Metrics cardinality: jobs of thousands of unknown tasks at a real worker, and rows in
thousands of queues, add no label values beyond a bound."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest

from pgjobs.operator import metrics as operator_metrics
from pgjobs.states import FINISHED_STATES, JobState
from pgjobs.store import connecting, jobs
from pgjobs.store.records import NewJob
from pgjobs.worker import metrics as worker_metrics
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
    db = Database(database)

    async def enqueue_many(conn: Any) -> None:
        for number in range(UNKNOWN_TASKS):
            await jobs.enqueue(conn, NewJob(task=f"unknown_{number}", max_attempts=1))

    db.call(enqueue_many)
    port = free_port()
    worker = WorkerProcess(database_env, extra=["--metrics-port", str(port)])
    try:
        wait_for(
            lambda: all(
                job.state in FINISHED_STATES for job in db.call(lambda c: jobs.list_jobs(c, None, 100_000))
            ),
            timeout=120,
            what="every unknown-task job to fail",
        )
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert worker.process.poll() is None, worker.output()[-3000:]
    finally:
        worker.stop()
    assert "unknown_1" not in page
    assert f'task="{worker_metrics.UNKNOWN_TASK}"' in page
    assert len(page) < 100_000, len(page)
    failed = db.call(lambda c: jobs.list_jobs(c, None, 1))[0]
    # The reason names the task, not every task the worker knows (other tenants' among them).
    assert failed.message and "unknown task" in failed.message and "sleep" not in failed.message


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
