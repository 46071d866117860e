"""Task modules for mixed worker fleets: each pool module registers one task the others lack
(`pgjobs worker --tasks tests.fleet_tasks.pool_a`). A run is recorded in the test ledger as
`<task> job_id attempt pid` (tests.sample_tasks), so a test sees which worker ran which job."""

from __future__ import annotations

import asyncio

from pgjobs.store import connecting
from pgjobs.tasks import registry
from pgjobs.worker.running import Worker
from pgjobs.worker.settings import WorkerSettings


def drain_claiming_any_task(database: connecting.DatabaseSettings) -> Worker:
    """Drain the default queue in this process with a worker that claims jobs of any task, as a
    worker of code from before task filtering does (its row records no tasks and its claim sends
    none): the only way left for a job of a task the worker does not know to reach it. Returns
    the worker, once the queue is empty (a burst worker)."""
    registry.load(["pgjobs.tasks.builtins"], entry_points=False)
    settings = WorkerSettings(burst=True, heartbeat_interval=0.3, stall_timeout=2, poll_interval=0.2)
    worker = Worker(database, settings, listen=False)
    worker.tasks = None
    asyncio.run(worker.run())
    return worker
