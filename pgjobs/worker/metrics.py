"""Prometheus metrics of a worker process, served on `--metrics-port`.

Every label set is bounded: tasks by the registered ones (others are `unknown`), results by the
verdicts.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from pgjobs import build
from pgjobs.tasks import registry

JOBS = Counter(
    "pgjobs_worker_jobs_total", "Job attempts finished by this worker, by task and result", ["task", "result"]
)
JOB_DURATION = Histogram(
    "pgjobs_worker_job_duration_seconds",
    "Run time of job attempts",
    ["task"],
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
PICKUP_LATENCY = Histogram(
    "pgjobs_worker_pickup_latency_seconds",
    "From a job becoming runnable (created or retried) to its claim",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300),
)
#: Fine below 10 ms, where a healthy claim lies: a doubling of its p99 (dead index entries, an old
#: snapshot) moves it across buckets, not within one (bench/soak.py reads these).
ROUND_TRIP_BUCKETS = (
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.02,
    0.05,
    0.1,
    0.5,
    1,
)
CLAIM_DURATION = Histogram(
    "pgjobs_worker_claim_duration_seconds",
    "Round trip of one claim statement of a slot that had no job (after a wake-up or a poll)",
    buckets=ROUND_TRIP_BUCKETS,
)
COMPLETE_AND_CLAIM_DURATION = Histogram(
    "pgjobs_worker_complete_and_claim_duration_seconds",
    "Round trip of one statement that records a completion and claims the next job (most claims"
    " of a busy worker)",
    buckets=ROUND_TRIP_BUCKETS,
)
SLOTS = Gauge("pgjobs_worker_slots", "Job slots of this worker process")
BUSY_SLOTS = Gauge("pgjobs_worker_busy_slots", "Slots running a job now")
HEARTBEAT_FAILURES = Counter(
    "pgjobs_worker_heartbeat_failures_total", "Heartbeats that did not reach the database"
)
FENCED_WRITES_REFUSED = Counter(
    "pgjobs_worker_fenced_writes_refused_total",
    "Writes refused because the job was no longer held by this worker",
)
ORPHANS_HANDED_BACK = Counter(
    "pgjobs_worker_orphaned_jobs_handed_back_total",
    "Jobs this worker held but none of its slots ran (a claim's answer lost with its connection),"
    " handed back to Pending",
)
WAKEUPS_PASSED_ON = Counter(
    "pgjobs_worker_wakeups_passed_on_total",
    "New-job wake-ups naming this worker when no slot was free, passed on to every worker",
)
CONFLICTS_RETRIED = Counter(
    "pgjobs_worker_conflicts_retried_total",
    "Statements rolled back by a deadlock or serialization failure with another transaction,"
    " run again at once",
)
RESCUED = Counter("pgjobs_worker_rescued_jobs_total", "Stalled jobs this worker's rescue sweeps recovered")


#: The task label of jobs whose task this worker does not know: any name can be enqueued, and a
#: label value per name would grow the process and its /metrics page without bound.
UNKNOWN_TASK = "unknown"


@functools.cache
def _job_series(task: str, result: str) -> tuple[Any, Any]:
    # Label lookups take a lock and hash the labels: once per task, not once per job. Bounded:
    # registered task names and a handful of results.
    return JOBS.labels(task, result), JOB_DURATION.labels(task)


def declare_job_series(results: list[str]) -> None:
    """Every registered task's series at 0 from the start: a series born at its first job makes
    rate() and increase() miss that job, so a task's first failure would never show."""
    for task in [*registry.names(), UNKNOWN_TASK]:
        for result in results:
            _job_series(task, result)


def record_job(task: str, result: str, seconds: float) -> None:
    finished, duration = _job_series(task if registry.get(task) else UNKNOWN_TASK, result)
    finished.inc()
    duration.observe(seconds)


def serve(port: int) -> None:
    build.publish_build_info("worker")
    start_http_server(port)
