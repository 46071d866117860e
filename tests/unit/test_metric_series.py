"""Metric series exist from the start, and a replica that stops leading stops counting."""

from __future__ import annotations

import json
import subprocess
import sys

from prometheus_client import REGISTRY

from pgjobs.operator import metrics as operator_metrics
from pgjobs.worker import metrics as worker_metrics


def _value(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


#: Run in a fresh interpreter: a worker run in this test process (the abuse suite runs one in
#: process) would have counted jobs in the same global registry already.
FRESH_WORKER = """
import json
from prometheus_client import REGISTRY
from pgjobs.tasks import registry
from pgjobs.worker import metrics
from pgjobs.worker.execution import Verdict
registry.load([])  # the built-in tasks
assert registry.get("sleep") is not None
metrics.declare_job_series([verdict.value for verdict in Verdict])
print(json.dumps({
    task: [REGISTRY.get_sample_value("pgjobs_worker_jobs_total", {"task": task, "result": "failed"}),
           REGISTRY.get_sample_value("pgjobs_worker_job_duration_seconds_count", {"task": task})]
    for task in ("sleep", metrics.UNKNOWN_TASK)
}))
"""


def test_a_workers_job_series_exist_before_its_first_job() -> None:
    # A series born at its first event hides that event from rate(): each must read 0 first.
    found = subprocess.run([sys.executable, "-c", FRESH_WORKER], capture_output=True, text=True, check=True)
    assert json.loads(found.stdout) == {"sleep": [0.0, 0.0], worker_metrics.UNKNOWN_TASK: [0.0, 0.0]}


def test_the_operators_labelled_series_exist_before_their_first_event() -> None:
    operator_metrics.declare_series()
    assert _value("pgjobs_operator_rescued_jobs_total", {"phase": "Failed"}) == 0
    assert _value("pgjobs_operator_status_writes_total", {"result": "error"}) == 0
    assert _value("pgjobs_operator_run_time_seconds_count", {"phase": "Stopped", "queue": "default"}) == 0
    assert _value("pgjobs_operator_pickup_latency_seconds_count", {"queue": "default"}) == 0


def test_latency_series_carry_the_queue_while_it_is_among_the_busiest() -> None:
    busy = [{"state": "pending", "priority": 1, "queue": f"q{i}", "jobs": 1000 - i} for i in range(60)]
    operator_metrics.set_job_counts(busy)
    assert operator_metrics.queue_label("q0") == "q0"
    assert operator_metrics.queue_label("q59") == operator_metrics.OTHER_QUEUES  # past MAX_QUEUE_LABELS
    assert operator_metrics.queue_label("never-seen") == operator_metrics.OTHER_QUEUES
    operator_metrics.set_job_counts([])
    assert operator_metrics.queue_label("default") == "default"


def test_a_replica_that_stops_leading_reports_no_counts() -> None:
    operator_metrics.set_job_counts([{"state": "pending", "priority": 1, "queue": "default", "jobs": 7}])
    operator_metrics.WORKERS_ALIVE.set(3)
    assert _value("pgjobs_jobs", {"phase": "Pending", "priority": "Regular", "queue": "default"}) == 7
    operator_metrics.forget_leader_gauges()
    assert _value("pgjobs_jobs", {"phase": "Pending", "priority": "Regular", "queue": "default"}) is None
    assert _value("pgjobs_workers_alive", {}) == 0


def test_the_oldest_due_age_per_queue_is_bounded_like_the_counts() -> None:
    operator_metrics.set_job_counts([{"state": "pending", "priority": 1, "queue": "busy", "jobs": 9}])
    operator_metrics.set_oldest_due({"busy": 12.0, "rare-1": 30.0, "rare-2": 50.0})
    assert _value("pgjobs_queue_oldest_pending_age_seconds", {"queue": "busy"}) == 12
    assert _value("pgjobs_queue_oldest_pending_age_seconds", {"queue": operator_metrics.OTHER_QUEUES}) == 50
    operator_metrics.set_oldest_due({})
    assert _value("pgjobs_queue_oldest_pending_age_seconds", {"queue": "busy"}) is None
