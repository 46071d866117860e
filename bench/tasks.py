"""Tasks the benchmarks load into workers with `--tasks bench.tasks` (PYTHONPATH = repo root)."""

from __future__ import annotations

import os
import time
from typing import Any

import pgjobs


@pgjobs.task("bench_stamp")
async def stamp(context: pgjobs.TaskContext, path: str, **ignored: Any) -> None:
    """Appends `job id, time.time() at start` to `path`: the enqueue → task started latency."""
    started = time.time()
    line = f"{context.job_id} {started:.6f}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@pgjobs.task("bench_busy")
async def busy(context: pgjobs.TaskContext, seconds: float = 60.0, **ignored: Any) -> None:
    """Holds its worker for `seconds` (or until stopped): the job the recovery benchmark kills under."""
    await context.asleep(seconds)
