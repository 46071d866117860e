"""How `pgjobs jobs` and `pgjobs workers` print: aligned tables for people, JSON for programs."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from pgjobs.store.records import Job, Worker


def format_jobs(found: Sequence[Job], now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    rows = [["ID", "TASK", "STATE", "PRIORITY", "PROGRESS", "WORKER", "ATTEMPTS", "AGE"]]
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
    return format_table(rows)


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
