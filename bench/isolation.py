"""Isolation: a queue's drain with 100,000 High jobs it cannot take waiting ahead of its own.

The same drain (`jobs` noop jobs of queue `default`, Regular, by `workers` single-slot burst
workers) on a fresh database each time, with nothing else pending (the baseline, in the same
run) and with a backlog of High jobs that no worker of `default` may take:

- (a) in another queue (a tenant whose workers are scaled to zero);
- (b) in the same queue, of a task no worker has: once the leader has marked them (after the
  operator's `noWorkerAfter`, 120 s by default) and autovacuum has passed, and, for the record,
  before the mark (the first two minutes of such a backlog);
- (c) in the same queue and task, every job waiting out a retry's backoff.

The claim reads one index range per (queue, priority) (docs/architecture.md, "Claim"), so each
holds when its rate is at least 0.8x the baseline's. tests/integration/test_claim_plan.py
checks the plans of the same cases.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench import environment
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store.queries import STATEMENTS
from pgjobs.store.records import NewJob

SIZES = {
    "full": {"jobs": 10_000, "backlog": 100_000, "workers": 4, "rounds": 3, "slow_jobs": 1_000},
    "quick": {"jobs": 3_000, "backlog": 100_000, "workers": 4, "rounds": 1, "slow_jobs": 500},
}
#: Each case holds at this fraction of the baseline's rate or more.
TARGET = 0.8
Conn = psycopg.Connection[Any]

SPAN = """
SELECT count(*) AS done, extract(epoch FROM max(finished_at) - min(started_at))::float8 AS span
FROM pgjobs.jobs WHERE state = 'completed' AND queue = 'default'
"""


def _another_queue(conn: Conn, count: int) -> None:
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority, queue)"
        " SELECT 'noop', 2, 'elsewhere' FROM generate_series(1, %s)",
        [count],
    )


def _unknown_task(conn: Conn, count: int) -> None:
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority, run_after)"
        " SELECT 'unknown', 2, now() - interval '10 minutes' FROM generate_series(1, %s)",
        [count],
    )


def _unknown_task_marked(conn: Conn, count: int) -> None:
    _unknown_task(conn, count)
    conn.execute(STATEMENTS["job_mark_no_worker"], {"after_seconds": 120})


def _in_backoff(conn: Conn, count: int) -> None:
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority, attempt, run_after)"
        " SELECT 'noop', 2, 1, now() + interval '1 hour' FROM generate_series(1, %s)",
        [count],
    )


#: (label, builder, held to the target); the unmarked case is shown, not held, and drains
#: `slow_jobs` only (a claim walks the whole backlog there: its rate is far lower).
CASES: list[tuple[str, Callable[[Conn, int], None] | None, bool]] = [
    ("no backlog (baseline)", None, False),
    ("(a) another queue", _another_queue, True),
    ("(b) a task no worker has, marked", _unknown_task_marked, True),
    ("(c) the same queue in backoff", _in_backoff, True),
    ("(b') a task no worker has, not yet marked", _unknown_task, False),
]


def drain(
    server: PostgresServer,
    size: dict[str, int],
    number: int,
    build: Callable[[Conn, int], None] | None,
    jobs_count: int,
) -> dict[str, Any]:
    database = environment.pgjobs_database(server, f"isolation_{number}")
    if build is not None:
        with database.connect() as conn:
            build(conn, size["backlog"])
    environment.enqueue(database, NewJob("noop"), jobs_count)  # and VACUUM ANALYZE, as autovacuum would
    with database.connect() as conn:
        # The backlog's writes are flushed before the drain starts, not during it.
        conn.execute("CHECKPOINT")
    began = time.perf_counter()
    processes = environment.start_workers(database, size["workers"], ["--burst"])
    codes, cpu = environment.wait_with_cpu(processes)
    with database.connect() as conn:
        row = conn.execute(SPAN).fetchone()
    assert row is not None
    span = float(row["span"] or 0.0)
    done = int(row["done"])
    return {
        "completed": done,
        "span_s": span,
        "jobs_per_s": done / span if span else 0.0,
        "wall_s": time.perf_counter() - began,
        "exit_codes": codes,
        "worker_cpu_s": cpu,
    }


def run(server: PostgresServer, *, quick: bool) -> dict[str, Any]:
    """The baseline and the held cases `rounds` times, interleaved and in a rotated order (the
    machine is shared, and a drain can pay for the autovacuum of the one before it); each case's
    median. The slow, unmarked case runs once, after them, so it slows none of them."""
    size = SIZES["quick" if quick else "full"]
    rates: dict[str, list[float]] = {label: [] for label, _, _ in CASES}
    drains = []
    measured = [case for case in CASES if case[2] or case[1] is None]
    slow = [case for case in CASES if case not in measured]
    schedule = [
        (round_, case)
        for round_ in range(size["rounds"])
        for case in measured[round_ % len(measured) :] + measured[: round_ % len(measured)]
    ] + [(size["rounds"], case) for case in slow]
    for number, (round_, (label, build, held)) in enumerate(schedule):
        jobs_count = size["jobs"] if held or build is None else size["slow_jobs"]
        result = drain(server, size, number, build, jobs_count)
        rates[label].append(result["jobs_per_s"])
        drains.append({"case": label, "round": round_, **result})
        environment.progress(f"isolation, {label}: {result['jobs_per_s']:.0f} jobs/s")
    baseline = statistics.median(rates[CASES[0][0]])
    rows = [
        {
            "case": label,
            "held_to_target": held,
            "jobs_per_s": statistics.median(rates[label]),
            "rates": rates[label],
            "ratio": statistics.median(rates[label]) / baseline if baseline else None,
        }
        for label, _, held in CASES
    ]
    return {"sizes": size, "target": TARGET, "rows": rows, "drains": drains}


def table(results: dict[str, Any]) -> str:
    size = results["sizes"]
    out = [
        f"Isolation: {size['jobs']:,} Regular noop jobs of queue default drained by {size['workers']}"
        f" burst workers, with {size['backlog']:,} High jobs they cannot take"
        f" (target >= {results['target']}x the baseline)",
        f"{'case':<44} {'jobs/s':>8} {'ratio':>6}   (median of {size['rounds']} rotated rounds)",
    ]
    for row in results["rows"]:
        ratio = row["ratio"]
        verdict = ""
        if row["held_to_target"] and ratio is not None:
            verdict = "  holds" if ratio >= results["target"] else "  MISSED"
        shown = "" if ratio is None else f"{ratio:6.2f}"
        out.append(f"{row['case']:<44} {row['jobs_per_s']:8.0f} {shown:>6}{verdict}")
    return "\n".join(out)
