"""Built-in tasks: `sleep` (the demo job), `noop` (benchmarks) and `shell` (opt-in per worker)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from pgjobs.tasks import environment
from pgjobs.tasks.context import JobStopped, TaskContext
from pgjobs.tasks.registry import task

#: How long `shell` waits after SIGTERM before it sends SIGKILL.
SHELL_KILL_AFTER_SECONDS = 5.0


@task("noop")
async def noop(context: TaskContext, **ignored: Any) -> None:
    """Does nothing: measures the queue itself."""


@task("sleep")
async def sleep(context: TaskContext, seconds: float = 10.0, steps: int = 10) -> dict[str, float]:
    """Sleeps `seconds` in `steps` equal steps, reporting progress and logging "step N/STEPS"
    after each (10%, 20%, …)."""
    if seconds < 0 or steps < 1:
        raise ValueError(f"sleep needs seconds >= 0 and steps >= 1, got seconds={seconds}, steps={steps}")
    for step in range(1, steps + 1):
        if not await context.asleep(seconds / steps):
            raise JobStopped(f"stopped at {100 * (step - 1) // steps}%")
        context.progress(100 * step / steps)
        context.log.info("step %d/%d", step, steps)
    return {"slept": float(seconds)}


@task("shell", unsafe=True)
async def shell(
    context: TaskContext, command: Sequence[str], env: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Runs a command (a list: no shell parsing); its output is the job's log, line by line.

    The command gets a scrubbed environment (`pgjobs.tasks.environment`): PATH, HOME, the locale
    and a few more from the worker, plus the job's `env`; never the worker's database login.
    A non-zero exit fails the job. A stop sends SIGTERM, then SIGKILL after a grace period.
    """
    if isinstance(command, str) or not command or not all(isinstance(part, str) for part in command):
        raise ValueError('shell needs "command" as a non-empty list of strings, e.g. ["echo", "hi"]')
    if env is not None and not isinstance(env, Mapping):
        raise ValueError('shell takes "env" as an object of strings, e.g. {"MODE": "fast"}')
    variables = environment.scrubbed(env)
    environment.protect_process()
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=variables
    )
    output = asyncio.create_task(_log_output(context, process))
    stop = asyncio.create_task(context.stopped())
    try:
        await asyncio.wait({output, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop.done():
            await _terminate(process)
            raise JobStopped(f"command stopped ({context.stop_reason})")
        code = await process.wait()
    except asyncio.CancelledError:
        await _terminate(process)
        raise
    finally:
        stop.cancel()
    if code != 0:
        raise RuntimeError(f"command {command[0]!r} exited with code {code}")
    return {"exit_code": code}


async def _log_output(context: TaskContext, process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        context.log.info("%s", line.decode(errors="replace").rstrip())


async def _terminate(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(SHELL_KILL_AFTER_SECONDS):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
