"""Pickup latency: idle workers waiting (LISTEN/NOTIFY, default poll interval), one job at a time.

Both figures start when the job is enqueued, i.e. at the row's `created_at` (the enqueuing
transaction's start, database clock = this machine's clock):
enqueue → claimed is the row's `started_at - created_at`; enqueue → task started is the
`time.time()` the task `bench_stamp` records at its first line minus `created_at`.
Also recorded: task started minus the `time.time()` taken just before the enqueue call, which
adds the client's own side of the enqueue round trip (building and sending the INSERT).
A pause between samples lets the previous job finish, so every sample meets idle workers.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import environment
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store import connecting, jobs
from pgjobs.store.records import NewJob

PAUSE = 0.02


def summary(part: dict[str, Any]) -> str:
    """One progress line: p50/p99 of each figure (the raw samples stay in the JSON)."""
    figures = ("enqueue_to_claimed", "enqueue_to_task_started")
    return "; ".join(
        f"{name.replace('_', ' ')} p50 {part[name]['p50_ms']:.2f} ms, p99 {part[name]['p99_ms']:.2f} ms"
        for name in figures
        if part.get(name)
    )


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    return {
        "p50_ms": at(0.50) * 1000,
        "p95_ms": at(0.95) * 1000,
        "p99_ms": at(0.99) * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "samples": len(ordered),
    }


def run(server: PostgresServer, samples: int, workers: int) -> dict[str, Any]:
    database = environment.pgjobs_database(server, "latency")
    stamps = Path(tempfile.mkdtemp(prefix="pgjobs-bench-")) / "stamps.txt"
    processes = environment.start_workers(database, workers, ["--tasks", "bench.tasks"])
    try:
        environment.wait_for_workers(database, workers)
        time.sleep(0.5)  # LISTEN issued, first poll done
        enqueued = asyncio.run(_enqueue_one_by_one(database, samples, str(stamps)))
        deadline = time.monotonic() + 30
        while _count_lines(stamps) < samples and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        environment.stop_processes(processes)
    started = dict(_read_stamps(stamps))
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT id, extract(epoch FROM started_at - created_at)::float8 AS claim_s,"
            " extract(epoch FROM created_at)::float8 AS created FROM pgjobs.jobs"
            " WHERE started_at IS NOT NULL"
        ).fetchall()
    claimed = [float(row["claim_s"]) for row in rows]
    to_task = [started[row["id"]] - float(row["created"]) for row in rows if row["id"] in started]
    from_call = [started[job_id] - at for job_id, at in enqueued.items() if job_id in started]
    return {
        "workers": workers,
        "enqueue_to_claimed": percentiles(claimed),
        "enqueue_to_task_started": percentiles(to_task),
        "enqueue_call_to_task_started": percentiles(from_call),
        "missing": samples - len(to_task),
        # Raw samples (ms) for the CDF plot.
        "samples_ms": {
            "enqueue_to_claimed": [round(v * 1000, 3) for v in sorted(claimed)],
            "enqueue_to_task_started": [round(v * 1000, 3) for v in sorted(to_task)],
        },
    }


async def _enqueue_one_by_one(database: environment.Database, samples: int, path: str) -> dict[int, float]:
    conn = await connecting.connect(connecting.DatabaseSettings(url=database.url))
    enqueued: dict[int, float] = {}
    async with conn:
        for _ in range(samples):
            before = time.time()
            (job_id,) = await jobs.enqueue(conn, NewJob("bench_stamp", {"path": path}))
            enqueued[job_id] = before
            await asyncio.sleep(PAUSE)
    return enqueued


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _read_stamps(path: Path) -> list[tuple[int, float]]:
    pairs = []
    for line in path.read_text().splitlines() if path.exists() else []:
        job_id, at = line.split()
        pairs.append((int(job_id), float(at)))
    return pairs
