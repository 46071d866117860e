"""Recovery time: a busy worker is killed (SIGKILL) or stopped (SIGTERM, --shutdown-grace 0);
how long until its job is Running again on another worker.

Two single-slot workers run with a short heartbeat interval and stall timeout (HEARTBEAT,
STALL below). One long job (`bench_busy`, backoff_seconds 0 so that a rescued job may run at
once) occupies one of them; we signal that worker's pid (from its `pgjobs.workers` row) and poll
the job's row every POLL seconds until another worker holds it.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from bench import environment
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store.records import NewJob

HEARTBEAT = 0.5
STALL = 2.0
POLL = 0.005
OPTIONS = [
    "--tasks",
    "bench.tasks",
    "--heartbeat-interval",
    str(HEARTBEAT),
    "--stall-timeout",
    str(STALL),
    "--shutdown-grace",
    "0",
]


def run(server: PostgresServer, repeats: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "heartbeat_interval_s": HEARTBEAT,
        "stall_timeout_s": STALL,
        "poll_interval_s": 2.0,
    }
    for name, signum in (("sigkill", signal.SIGKILL), ("sigterm", signal.SIGTERM)):
        times = [_once(server, signum) for _ in range(repeats)]
        result[name] = {"samples_s": times, "max_s": max(times), "mean_s": sum(times) / len(times)}
    result["sigkill"]["target_s"] = STALL + 2 * HEARTBEAT
    result["sigterm"]["target_s"] = 1.0
    return result


def _once(server: PostgresServer, signum: signal.Signals) -> float:
    database = environment.pgjobs_database(server, f"recovery_{signum.name.lower()}")
    processes = environment.start_workers(database, 2, OPTIONS)
    try:
        environment.wait_for_workers(database, 2)
        environment.enqueue(database, NewJob("bench_busy", {"seconds": 120}, backoff_seconds=0), 1)
        with database.connect() as conn:
            holder = _wait_running(conn, None, 20.0)
            pid = conn.execute("SELECT pid FROM pgjobs.workers WHERE id = %s", (holder,)).fetchone()
            assert pid is not None
            signalled = time.monotonic()
            os.kill(int(pid["pid"]), signum)
            _wait_running(conn, holder, 60.0)
            return time.monotonic() - signalled
    finally:
        environment.stop_processes(processes)


def _wait_running(conn: Any, other_than: Any, timeout: float) -> Any:
    """Poll until the job runs on a worker other than `other_than`; returns that worker's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT worker_id FROM pgjobs.jobs WHERE state = 'running'").fetchone()
        if row and row["worker_id"] is not None and row["worker_id"] != other_than:
            return row["worker_id"]
        time.sleep(POLL)
    raise RuntimeError(f"job not running on another worker within {timeout}s")
