"""How `pgjobs jobs` and `pgjobs workers` print: aligned tables for people, JSON for programs."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from pgjobs.states import JobState
from pgjobs.store.records import Job, Worker


def format_jobs(found: Sequence[Job], now: datetime.datetime | None = None) -> str:
    """The jobs as a table; a NOTE column appears when a pending job has no live worker that can
    run it (marked by the leading operator, `jobs.mark_no_worker`)."""
    now = now or datetime.datetime.now(datetime.UTC)
    rows = [["ID", "TASK", "STATE", "PRIORITY", "PROGRESS", "WORKER", "ATTEMPTS", "AGE"]]
    notes = [no_worker_note(job, now) for job in found]
    for job in found:
        rows.append(
            [
                str(job.id),
                job.task,
                job.state.phase,
                job.priority.label,
                f"{job.progress}%",
                job.worker_name or "-",
                f"{job.attempt}/{job.max_attempts}",
                format_age(now - job.created_at),
            ]
        )
    if any(notes):
        rows[0].append("NOTE")
        for row, note in zip(rows[1:], notes, strict=True):
            row.append(note)
    return format_table(rows)


def no_worker_note(job: Job, now: datetime.datetime) -> str:
    """'no worker for task T on queue Q (5m)' for a pending job no live worker can run, else ''."""
    if job.state is not JobState.PENDING or job.no_worker_since is None:
        return ""
    since = format_age(now - job.no_worker_since)
    return f"no worker for task {job.task} on queue {job.queue} ({since})"


def format_workers(found: Sequence[Worker], now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    rows = [["ID", "HOST", "PID", "STATE", "QUEUES", "RUNNING", "IDLE", "LAST HEARTBEAT", "AGE"]]
    for worker in found:
        rows.append(
            [
                str(worker.id),
                worker.hostname,
                str(worker.pid),
                worker.state,
                ",".join(worker.queues),
                f"{worker.running_jobs}/{worker.concurrency}",
                str(worker.idle_slots),
                format_age(now - worker.heartbeat_at) + " ago",
                format_age(now - worker.started_at),
            ]
        )
    return format_table(rows)


def worker_json(worker: Worker) -> dict[str, Any]:
    return {
        "id": str(worker.id),
        "hostname": worker.hostname,
        "pid": worker.pid,
        "queues": worker.queues,
        "concurrency": worker.concurrency,
        "state": worker.state,
        "running_jobs": worker.running_jobs,
        "idle_slots": worker.idle_slots,
        "tasks": worker.tasks,
        "started_at": worker.started_at.isoformat(),
        "heartbeat_at": worker.heartbeat_at.isoformat(),
    }


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def format_age(age: datetime.timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
