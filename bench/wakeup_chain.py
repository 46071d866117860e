"""Where an idle worker's pickup time goes: `python -m bench.wakeup_chain [--samples N] [--durable]`.

One idle worker with one slot, jobs enqueued one at a time (as bench/latency.py does); the
worker loads this module as a task module (`--tasks bench.wakeup_chain`), which registers the
stamping task and wraps, in that process only, the points of the wake-up chain to note the
time at each (`time.time()`, the database's clock being this machine's):

created (the enqueuing transaction's start) → notified (the listener's callback: the INSERT, the
trigger, the commit and the notification's way to the worker) → claim sent (the slot resumed and
its claim is on its way) → claimed (`started_at`, the claim's transaction start) → claim
answered (executed, committed, parsed) → task started; and, for reference, enqueue answered (the
client's INSERT returned).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pgjobs
from bench import environment
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store import connecting, jobs
from pgjobs.store.records import NewJob

EVENTS_ENV = "PGJOBS_WAKEUP_EVENTS"
PAUSE = 0.02
#: Consecutive steps, and two spans for reference: the client's own view of its INSERT (the
#: notification may reach the worker before the answer reaches the client: both leave at commit)
#: and the whole pickup.
STEPS = (
    ("created", "notified"),
    ("notified", "claim_sent"),
    ("claim_sent", "claimed"),
    ("claimed", "claim_answered"),
    ("claim_answered", "task_started"),
    ("created", "enqueue_answered"),
    ("created", "task_started"),
)


def _note(event: str, job_id: object) -> None:
    line = f"{event} {job_id} {time.time():.6f}\n"
    fd = os.open(os.environ[EVENTS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@pgjobs.task("wakeup_stamp")
async def stamp(context: pgjobs.TaskContext, **ignored: Any) -> None:
    _note("task_started", context.job_id)


def _instrument() -> None:
    """Wrap the listener's callback and the claim, in the worker process only."""
    from pgjobs.worker import running, slots

    notified = running.Worker._notified
    claim = slots.jobs.claim

    def noted_notification(self: Any, channel: str, payload: str) -> None:
        _note("notified", payload or "-")
        notified(self, channel, payload)

    async def noted_claim(*args: Any, **kwargs: Any) -> Any:
        _note("claim_sent", "-")
        job = await claim(*args, **kwargs)
        _note("claim_answered", job.id if job else "-")
        return job

    running.Worker._notified = noted_notification  # type: ignore[method-assign]
    slots.jobs.claim = noted_claim  # type: ignore[attr-defined]


if EVENTS_ENV in os.environ:  # imported by the worker (the bench sets it only for its children)
    _instrument()


def run(server: PostgresServer, samples: int) -> dict[str, Any]:
    database = environment.pgjobs_database(server, "wakeups")
    events = Path(tempfile.mkdtemp(prefix="pgjobs-wakeups-")) / "events.txt"
    os.environ[EVENTS_ENV] = str(events)
    options = ["--tasks", "bench.wakeup_chain", "--concurrency", "1"]
    processes = environment.start_workers(database, 1, options)
    try:
        environment.wait_for_workers(database, 1)
        time.sleep(0.5)
        asyncio.run(_enqueue(database, samples))
        time.sleep(0.5)
    finally:
        environment.stop_processes(processes)
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT id, extract(epoch FROM created_at)::float8 AS created,"
            " extract(epoch FROM started_at)::float8 AS claimed FROM pgjobs.jobs"
        ).fetchall()
    return _steps(_timelines(events, rows))


async def _enqueue(database: environment.Database, samples: int) -> None:
    conn = await connecting.connect(connecting.DatabaseSettings(url=database.url))
    async with conn:
        for _ in range(samples):
            (job_id,) = await jobs.enqueue(conn, NewJob("wakeup_stamp"))
            _note("enqueue_answered", job_id)
            await asyncio.sleep(PAUSE)


def _timelines(events: Path, rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per job, the time of each event. A claim sent is the job's when its answer names it; the
    notification is the one whose payload is the job's id (a targeted wake-up)."""
    by_job: dict[str, dict[str, float]] = {
        str(row["id"]): {"created": row["created"], "claimed": row["claimed"]} for row in rows
    }
    sent = 0.0
    for line in events.read_text().splitlines():
        event, job, at = line.split()
        if event == "claim_sent":
            sent = float(at)
            continue
        if job in by_job:
            by_job[job][event] = float(at)
            if event == "claim_answered":
                by_job[job]["claim_sent"] = sent
    return [timeline for timeline in by_job.values() if len(timeline) == 7]


def _steps(timelines: list[dict[str, float]]) -> dict[str, Any]:
    result: dict[str, Any] = {"samples": len(timelines)}
    for start, end in STEPS:
        values = sorted(1000 * (t[end] - t[start]) for t in timelines)
        result[f"{start} -> {end}"] = {
            "p50_ms": values[len(values) // 2],
            "p99_ms": values[min(len(values) - 1, round(0.99 * (len(values) - 1)))],
            "mean_ms": statistics.fmean(values),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wakeup_chain", description=__doc__)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--durable", action="store_true", help="a durable server")
    parser.add_argument("--name", help="also write bench/results/wakeup-chain-NAME.json")
    args = parser.parse_args()
    with PostgresServer(durable=args.durable) as server:
        steps = run(server, args.samples)
    if args.name:
        path = Path(__file__).resolve().parent / "results" / f"wakeup-chain-{args.name}.json"
        record = {"durable": args.durable, "load_average": os.getloadavg(), "steps": steps}
        path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{steps.pop('samples')} jobs, one idle single-slot worker (ms)")
    for name, figures in steps.items():
        print(
            f"{name:<36} p50 {figures['p50_ms']:6.3f}  p99 {figures['p99_ms']:6.3f}"
            f"  mean {figures['mean_ms']:6.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
