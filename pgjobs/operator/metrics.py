"""Prometheus metrics of the operator: queue depth, latencies, status sync, rescues, workers, leadership.

Names: `pgjobs_*` for facts about the queue (the same whichever replica reports them; only
the leader does), `pgjobs_operator_*` for facts about this operator process.
"""

from __future__ import annotations

import collections

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from pgjobs.states import JobState, Priority
from pgjobs.store.records import Row

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

JOBS = Gauge("pgjobs_jobs", "Jobs by phase, priority and queue (leader only)", ["phase", "priority", "queue"])
WORKERS_ALIVE = Gauge("pgjobs_workers_alive", "Workers that heartbeated within the stall timeout")
OLDEST_SNAPSHOT = Gauge(
    "pgjobs_oldest_snapshot_age_seconds",
    "Age of the oldest open transaction in the queue's database: finished jobs cannot be vacuumed"
    " while it lasts, and claims slow down (leader only)",
)
PICKUP_LATENCY = Histogram(
    "pgjobs_operator_pickup_latency_seconds",
    "From the creation of a job to the start of its first attempt",
    buckets=_LATENCY_BUCKETS,
)
RUN_TIME = Histogram(
    "pgjobs_operator_run_time_seconds",
    "From the start of the last attempt to the end of the job, by phase",
    ["phase"],
    buckets=_LATENCY_BUCKETS,
)
SYNC_LAG = Histogram(
    "pgjobs_operator_status_sync_lag_seconds",
    "From a job's start or end in PostgreSQL to its PgJob status showing it",
    buckets=_LATENCY_BUCKETS,
)
STATUS_WRITES = Counter("pgjobs_operator_status_writes_total", "PgJob status patches, by result", ["result"])
EVENTS = Counter("pgjobs_operator_events_total", "Kubernetes Events posted, by reason", ["reason"])
EVENTS_SKIPPED = Counter(
    "pgjobs_operator_events_skipped_total",
    "Normal Events not posted because many waited already (the status says the same), by reason",
    ["reason"],
)
UNSYNCED = Gauge("pgjobs_operator_status_unsynced_jobs", "Rows whose status is not in Kubernetes yet")
RESCUES = Counter(
    "pgjobs_operator_rescued_jobs_total", "Jobs recovered from silent workers, by outcome", ["phase"]
)
TTL_DELETIONS = Counter("pgjobs_operator_ttl_deletions_total", "PgJobs deleted by ttlSecondsAfterFinished")
ORPHANS_REMOVED = Counter(
    "pgjobs_operator_orphan_rows_removed_total", "Rows removed because the PgJob is gone"
)
ROWS_ADOPTED = Counter(
    "pgjobs_operator_missing_rows_created_total",
    "PgJobs found without a row by the leader's sweep (a watch event never handled) and given one",
)
LEADER = Gauge("pgjobs_operator_leader", "1 while this replica leads (syncs status and runs maintenance)")


def serve(port: int) -> None:
    """Serve /metrics on the port (0: do not serve)."""
    if port:
        start_http_server(port)


#: Queues that get their own label value, the busiest first; the rest are counted as OTHER_QUEUES.
#: Any namespace may name any queue, so a label value per queue is unbounded.
MAX_QUEUE_LABELS = 50
OTHER_QUEUES = "_other"  # no queue is named so: names start alphanumeric


def set_job_counts(rows: list[Row]) -> None:
    totals: collections.Counter[str] = collections.Counter()
    for row in rows:
        totals[row["queue"]] += int(row["jobs"])
    shown = {queue for queue, _ in totals.most_common(MAX_QUEUE_LABELS)}
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for row in rows:
        queue = row["queue"] if row["queue"] in shown else OTHER_QUEUES
        counts[(JobState(row["state"]).phase, Priority(row["priority"]).label, queue)] += int(row["jobs"])
    JOBS.clear()  # a combination that has no jobs any more must not keep its last count
    for (phase, priority, queue), jobs in counts.items():
        JOBS.labels(phase=phase, priority=priority, queue=queue).set(jobs)
