"""Tasks used by the integration and fault tests. Each run is recorded by the task itself.

A run appends "job_id attempt pid" to the file named by `PGJOBS_TEST_LEDGER`, so tests count
executions as the task saw them, not as the database says.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import pgjobs


def _record(context: pgjobs.TaskContext, event: str) -> None:
    ledger = os.environ["PGJOBS_TEST_LEDGER"]
    line = f"{event} {context.job_id} {context.attempt} {os.getpid()}\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines from many processes never mix
    finally:
        os.close(fd)


@pgjobs.task("record")
async def record(context: pgjobs.TaskContext, seconds: float = 0.0, **ignored: Any) -> dict[str, int]:
    """Sleeps (stoppable), then records its completion."""
    _record(context, "start")
    if seconds and not await context.asleep(seconds):
        raise pgjobs.JobStopped("stopped while sleeping")
    _record(context, "done")
    return {"pid": os.getpid()}


@pgjobs.task("flaky")
async def flaky(context: pgjobs.TaskContext, failures: int = 1) -> str:
    """Fails its first `failures` attempts."""
    _record(context, "start")
    if context.attempt <= failures:
        raise RuntimeError(f"planned failure on attempt {context.attempt}")
    _record(context, "done")
    return "ok"


@pgjobs.task("stubborn")
def stubborn(context: pgjobs.TaskContext, seconds: float = 30.0) -> None:
    """A sync task that ignores stop requests: only hard cancellation ends it."""
    _record(context, "start")
    time.sleep(seconds)
    _record(context, "done")


@pgjobs.task("progress")
async def progress(context: pgjobs.TaskContext, updates: int = 100, seconds: float = 1.0) -> None:
    """Reports progress far more often than it is written."""
    _record(context, "start")
    for step in range(1, updates + 1):
        context.progress(100 * step / updates, f"step {step}")
        await asyncio.sleep(seconds / updates)
    _record(context, "done")


@pgjobs.task("bad_result")
async def bad_result(context: pgjobs.TaskContext, kind: str = "nan") -> object:
    """Returns what JSON (or PostgreSQL) cannot hold, or fails with such text in its error (a lone
    surrogate is what `surrogateescape` makes of a file name that is not UTF-8)."""
    if kind == "nul_error":
        raise RuntimeError("bad\x00byte")
    if kind == "surrogate_error":
        raise RuntimeError(b"bad\xffbyte".decode("utf-8", "surrogateescape"))
    values: dict[str, object] = {
        "nan": {"value": float("nan")},
        "set": {1, 2, 3},
        "nul": {"text": "a\x00b"},
        "surrogate": {"name": b"caf\xe9".decode("utf-8", "surrogateescape")},
    }
    return values[kind]


@pgjobs.task("chatty")
async def chatty(
    context: pgjobs.TaskContext,
    lines: int = 3,
    failures: int = 0,
    secrets: bool = False,
    seconds: float = 0.0,
) -> None:
    """Logs `lines` numbered lines through its context logger, one through a library logger from
    a thread, optionally the worker's secrets (DB_PASSWORD and a connection string holding it),
    sleeping `seconds` between lines; fails its first `failures` attempts after logging."""
    _record(context, "start")
    for line in range(1, lines + 1):
        context.log.info("line %d of attempt %d", line, context.attempt)
        if seconds and not await context.asleep(seconds):
            raise pgjobs.JobStopped("stopped while logging")
    await asyncio.to_thread(logging.getLogger("tests.library").warning, "from a library, in a thread")
    if secrets:
        password = os.environ.get("DB_PASSWORD")
        context.log.info("password=%s url=postgresql://pgjobs:%s@db:5432/pgjobs", password, password)
    if context.attempt <= failures:
        raise RuntimeError(f"planned failure on attempt {context.attempt}")
    _record(context, "done")
