"""Prometheus metrics of the operator: queue depth, latencies, status sync, rescues, workers, leadership.

Names: `pgjobs_*` for facts about the queue (the same whichever replica reports them; only
the leader does), `pgjobs_operator_*` for facts about this operator process.
"""

from __future__ import annotations

import collections

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from pgjobs import build
from pgjobs.states import FINISHED_STATES, JobState, Priority
from pgjobs.store.records import NewJob, Row

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

JOBS = Gauge("pgjobs_jobs", "Jobs by phase, priority and queue (leader only)", ["phase", "priority", "queue"])
OLDEST_DUE = Gauge(
    "pgjobs_queue_oldest_pending_age_seconds",
    "How long the oldest due Pending job of each queue has waited (leader only)",
    ["queue"],
)
WORKERS_ALIVE = Gauge("pgjobs_workers_alive", "Workers that heartbeated within the stall timeout")
OLDEST_SNAPSHOT = Gauge(
    "pgjobs_oldest_snapshot_age_seconds",
    "Age of the oldest open transaction in the queue's database: finished jobs cannot be vacuumed"
    " while it lasts, and claims slow down (leader only)",
)
PICKUP_LATENCY = Histogram(
    "pgjobs_operator_pickup_latency_seconds",
    "From the creation of a job to the start of its first attempt, by queue",
    ["queue"],
    buckets=_LATENCY_BUCKETS,
)
RUN_TIME = Histogram(
    "pgjobs_operator_run_time_seconds",
    "From the start of the last attempt to the end of the job, by phase and queue",
    ["phase", "queue"],
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
FINISHED_PRUNED = Counter(
    "pgjobs_operator_finished_jobs_pruned_total",
    "Finished jobs without a PgJob deleted after --finished-retention",
)
LEADER = Gauge("pgjobs_operator_leader", "1 while this replica leads (syncs status and runs maintenance)")


def serve(port: int) -> None:
    """Serve /metrics on the port (0: do not serve)."""
    declare_series()
    build.publish_build_info("operator")
    if port:
        start_http_server(port)


def declare_series() -> None:
    """Every known label value's series at 0 from the start: a series born at its first event
    makes rate() and increase() miss that event, so a rare failure or rescue never shows."""
    PICKUP_LATENCY.labels(DEFAULT_QUEUE)
    for state in FINISHED_STATES:
        RUN_TIME.labels(state.phase, DEFAULT_QUEUE)
    for result in ("written", "gone", "stale", "error"):
        STATUS_WRITES.labels(result)
    for state in (JobState.PENDING, JobState.FAILED, JobState.STOPPED):
        RESCUES.labels(state.phase)


def forget_leader_gauges() -> None:
    """A replica that stops leading stops counting: its last counts would add to the new
    leader's in every sum over replicas."""
    JOBS.clear()
    OLDEST_DUE.clear()
    for gauge in (WORKERS_ALIVE, UNSYNCED, OLDEST_SNAPSHOT):
        gauge.set(0)


#: Queues that get their own label value, the busiest first; the rest are counted as OTHER_QUEUES.
#: Any namespace may name any queue, so a label value per queue is unbounded.
MAX_QUEUE_LABELS = 50
OTHER_QUEUES = "_other"  # no queue is named so: names start alphanumeric
DEFAULT_QUEUE = NewJob.queue
#: The queues that have a label value of their own now (the last count's busiest).
_labelled_queues: set[str] = {DEFAULT_QUEUE}


def queue_label(queue: str) -> str:
    """The label value of a queue in every series: its name while it is among the busiest."""
    return queue if queue in _labelled_queues else OTHER_QUEUES


def set_job_counts(rows: list[Row]) -> None:
    totals: collections.Counter[str] = collections.Counter()
    for row in rows:
        totals[row["queue"]] += int(row["jobs"])
    shown = {queue for queue, _ in totals.most_common(MAX_QUEUE_LABELS)}
    _labelled_queues.clear()
    _labelled_queues.update(shown or {DEFAULT_QUEUE})
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for row in rows:
        queue = row["queue"] if row["queue"] in shown else OTHER_QUEUES
        counts[(JobState(row["state"]).phase, Priority(row["priority"]).label, queue)] += int(row["jobs"])
    JOBS.clear()  # a combination that has no jobs any more must not keep its last count
    for (phase, priority, queue), jobs in counts.items():
        JOBS.labels(phase=phase, priority=priority, queue=queue).set(jobs)


def set_oldest_due(ages: dict[str, float]) -> None:
    """The oldest due Pending job's age per queue label (the oldest of the queues in `_other`)."""
    by_label: dict[str, float] = {}
    for queue, seconds in ages.items():
        label = queue_label(queue)
        by_label[label] = max(seconds, by_label.get(label, 0.0))
    OLDEST_DUE.clear()  # a queue with nothing due must not keep its last age
    for label, seconds in by_label.items():
        OLDEST_DUE.labels(label).set(seconds)
