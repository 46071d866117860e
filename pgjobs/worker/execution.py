"""One attempt of one job: run its task, write progress out, and end it on stop, timeout or loss.

The outcome is decided here and written by the slot (`slots.py`), so that the completion of one
job and the claim of the next can share a round trip.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import psycopg

from pgjobs.store import job_logs, jobs, records
from pgjobs.store.queries import Connection
from pgjobs.store.records import ClaimedJob
from pgjobs.tasks import registry
from pgjobs.tasks.context import JobStopped, TaskContext
from pgjobs.worker import capture
from pgjobs.worker.links import Link
from pgjobs.worker.settings import WorkerSettings

logger = logging.getLogger("pgjobs.worker")


class StopReason(enum.StrEnum):
    REQUESTED = "stop requested"
    TIMEOUT = "timeout"
    SHUTDOWN = "worker shutdown"
    #: The job is no longer this worker's (rescued, restarted or deleted): let go, write nothing.
    LOST = "job lost"
    #: Out of touch with the database past the stall timeout: the job may have been rescued.
    #: Let go and hand it back with a fenced write, which is refused if it was rescued.
    SILENT = "lost contact with the database"


_NO_GRACE = frozenset({StopReason.LOST, StopReason.SILENT, StopReason.SHUTDOWN})


class Verdict(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    RELEASED = "released"
    ABANDONED = "abandoned"


@dataclasses.dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    message: str | None = None
    result: Any = None
    #: A failure that another attempt cannot fix (unknown task, args that do not fit).
    final: bool = False


_COMPLETED_EMPTY = Outcome(Verdict.COMPLETED)


def describe(error: BaseException) -> str:
    """The error's type and text; a text that cannot be made (str() of an exception that holds a
    deep value recurses, and its RecursionError would end the worker) is said to be missing."""
    try:
        text = str(error)
    except Exception as failure:
        text = f"(its message could not be shown: {type(failure).__name__})"
    return f"{type(error).__name__}: {text}"


def _result_problem(result: Any) -> str | None:
    """Why a task's result may not be stored, or None. The walk bounds the depth first, so that
    json.dumps cannot recurse past the interpreter's limit (a RecursionError would end the worker)."""
    problem = records.json_problem(result, "it")
    if problem:
        return problem
    try:
        size = len(json.dumps(result, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError) as error:
        return f"it is not JSON: {error}"
    if size > records.MAX_RESULT_BYTES:
        return f"it is {size} bytes, over the limit of {records.MAX_RESULT_BYTES} bytes"
    return None


class _Deferred:
    """A write made a delay after it is scheduled, one at a time (progress, log lines)."""

    def __init__(self, write: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._write = write
        self._task: asyncio.Task[None] | None = None
        self._sleeping = False

    @property
    def scheduled(self) -> bool:
        return self._task is not None and not self._task.done()

    def schedule(self, delay: float) -> None:
        self._task = asyncio.create_task(self._after(delay))

    async def _after(self, delay: float) -> None:
        self._sleeping = True
        try:
            await asyncio.sleep(delay)
        finally:
            self._sleeping = False
        await self._write()

    async def settle(self) -> None:
        """Drop a write still waiting, but let one under way finish: its connection is shared."""
        task = self._task
        if task is None or task.done():
            return
        if self._sleeping:
            task.cancel()
        await asyncio.wait({task})


class Execution:
    def __init__(
        self, job: ClaimedJob, settings: WorkerSettings, link: Link, still_held: Callable[[], bool]
    ) -> None:
        self.job = job
        self._still_held = still_held
        self.settings = settings
        self.link = link
        self._loop = asyncio.get_running_loop()
        self.context = TaskContext(
            job.id,
            job.attempt,
            job.max_attempts,
            job.args,
            self._loop,
            self._progress_changed,
            still_held,
        )
        self.started = time.monotonic()
        #: Resolved when the supervisor has something to look at: the task ended, a stop, the
        #: deadline. A bare future: the cheapest wake-up asyncio has (this is per job).
        self._wake: asyncio.Future[None] | None = None
        self._stop_reason: StopReason | None = None
        #: Made on first use: most jobs report no progress and log nothing (this is per job).
        self._flusher: _Deferred | None = None
        self._last_flush = 0.0
        self._flushed: int | None = None
        self.log = capture.AttemptLog(job.id, job.attempt, self._lines_waiting)
        self._log_writer: _Deferred | None = None

    def request_stop(self, reason: StopReason) -> None:
        if self._stop_reason is None or reason is StopReason.LOST:
            self._stop_reason = reason
        self.context.request_stop(reason.value)
        self._wake_up()

    def _wake_up(self, *_: object) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> Outcome:
        task = registry.get(self.job.task)
        refusal = self._refusal(task)
        if refusal or task is None:
            return Outcome(Verdict.FAILED, refusal, final=True)
        # DEBUG: at INFO, a line at the start and one at the end cost a noop job ~50 µs of
        # its ~200 µs of CPU; the completion line (or a failure's) is the one per job at INFO.
        logger.debug(
            "Starting job %s (%s, attempt %s/%s)",
            self.job.id,
            self.job.task,
            self.job.attempt,
            self.job.max_attempts,
        )
        # The task runs with its attempt's log as capture.CURRENT, so that what it logs is kept.
        task_context = contextvars.copy_context()
        task_context.run(capture.CURRENT.set, self.log)
        try:
            runner = asyncio.create_task(self._call(task), context=task_context)
        except Exception as error:  # the call itself failed (it runs here now, not in the runner)
            return Outcome(Verdict.FAILED, describe(error))
        try:
            await self._supervise(runner)
            outcome = self._judge(runner)
            if outcome.verdict is Verdict.FAILED:
                capture.record_failure(self.log, outcome.message or "", self._task_error(runner))
        finally:
            if self._flusher is not None:
                await self._flusher.settle()
            if self._log_writer is not None:
                await self._log_writer.settle()
            last_lines = self.log.close()  # what the task logs from now on is dropped
            if last_lines:
                await self._write_log(last_lines)
        if outcome.verdict in (Verdict.FAILED, Verdict.STOPPED):
            await self._flush()  # completion writes 100% itself; a release resets progress
        return outcome

    def _refusal(self, task: registry.Task | None) -> str | None:
        if task is None:
            # Not the list of known tasks: the reason reaches whoever wrote the job, and which
            # tasks a shared worker pool offers is not every tenant's business.
            return (
                f"unknown task {self.job.task!r}: no task of that name is registered on the worker "
                "that claimed it (is the job in the right queue?)"
            )
        if task.unsafe and not self.settings.enable_shell:
            return (
                f"task {task.name!r} is disabled on this worker: start the worker with "
                "--enable-shell to allow it"
            )
        try:
            task.check_args(self.job.args)
        except TypeError as error:
            return f"args do not fit task {task.name!r}: {error}"
        return None

    def _call(self, task: registry.Task) -> Coroutine[Any, Any, Any]:
        # The task's own coroutine becomes the runner: no wrapper frame per job.
        if task.is_async:
            return cast(Coroutine[Any, Any, Any], task.function(self.context, **self.job.args))
        return asyncio.to_thread(task.function, self.context, **self.job.args)

    async def _supervise(self, runner: asyncio.Task[Any]) -> None:
        """Wait for the task, a stop or the deadline; no extra task per job (this is the hot path)."""
        loop = asyncio.get_running_loop()
        runner.add_done_callback(self._wake_up)
        timeout = self.job.timeout_seconds
        deadline = None
        if timeout is not None:
            deadline = loop.call_at(self._deadline(loop, timeout), self._time_out)
        try:
            while not runner.done():
                if self._stop_reason is not None:
                    await self._end(runner)
                    return
                self._wake = loop.create_future()
                await self._wake
        finally:
            self._wake = None
            if deadline is not None:
                deadline.cancel()

    def _deadline(self, loop: asyncio.AbstractEventLoop, timeout: float) -> float:
        """The loop's time at which the job times out (its clock may differ from time.monotonic)."""
        return loop.time() + timeout - (time.monotonic() - self.started)

    def _time_out(self) -> None:
        if self._stop_reason is None:
            self.request_stop(StopReason.TIMEOUT)

    async def _end(self, runner: asyncio.Task[Any]) -> None:
        """Ask the task to end, give it a grace period (none when lost or shutting down), then cancel."""
        grace = 0.0 if self._stop_reason in _NO_GRACE else self.settings.stop_grace
        if grace:
            await asyncio.wait({runner}, timeout=grace)
        if not runner.done():
            logger.warning(
                "Job %s did not end %.0fs after %s: cancelling it", self.job.id, grace, self._stop_reason
            )
            runner.cancel()
            # A sync task in a thread cannot be interrupted: its outcome is decided without it.
            await asyncio.wait({runner}, timeout=1.0)

    def _judge(self, runner: asyncio.Task[Any]) -> Outcome:
        reason = self._stop_reason
        if runner.done() and not runner.cancelled() and runner.exception() is None and reason is None:
            return self._completed(runner.result())
        if reason is StopReason.LOST:
            return Outcome(Verdict.ABANDONED, "the job is no longer held by this worker")
        if reason is StopReason.SHUTDOWN and self.settings.on_shutdown == "stop":
            return Outcome(Verdict.STOPPED, "stopped by a worker shutting down")
        if reason is StopReason.SHUTDOWN:
            return Outcome(Verdict.RELEASED, "handed back by a worker shutting down")
        if reason is StopReason.SILENT and not self._succeeded(runner):
            return Outcome(Verdict.RELEASED, "handed back: its worker lost contact with the database")
        if reason is StopReason.TIMEOUT:
            return Outcome(Verdict.FAILED, f"timed out after {self.job.timeout_seconds}s")
        if runner.done() and not runner.cancelled() and runner.exception() is None:
            return self._completed(runner.result())
        if reason is StopReason.REQUESTED:
            return Outcome(Verdict.STOPPED, self._stop_message(runner))
        error = self._task_error(runner)
        if isinstance(error, JobStopped):
            return Outcome(Verdict.STOPPED, str(error) or "stopped by the task")
        return Outcome(Verdict.FAILED, describe(error) if error else "cancelled")

    def _completed(self, result: Any) -> Outcome:
        """A result that JSON cannot hold, too deep or too large fails the job, never the worker."""
        if result is None:
            return _COMPLETED_EMPTY
        problem = _result_problem(result)
        if problem:
            message = f"task {self.job.task!r} returned a result that cannot be stored as JSON: {problem}"
            return Outcome(Verdict.FAILED, message, final=True)
        return Outcome(Verdict.COMPLETED, result=result)

    @staticmethod
    def _succeeded(runner: asyncio.Task[Any]) -> bool:
        return runner.done() and not runner.cancelled() and runner.exception() is None

    @staticmethod
    def _task_error(runner: asyncio.Task[Any]) -> BaseException | None:
        """What the task raised, None while it runs, when it returned or was cancelled."""
        return runner.exception() if runner.done() and not runner.cancelled() else None

    def _stop_message(self, runner: asyncio.Task[Any]) -> str:
        error = self._task_error(runner)
        if isinstance(error, JobStopped) and str(error):
            return f"stopped: {error}"
        return "stopped on request"

    # Progress: the task only records it; these write it out at most once per interval.

    def _progress_changed(self) -> None:
        if self._stop_reason is None and not self._still_held():
            self.request_stop(StopReason.SILENT)
        if self._flusher is None:
            self._flusher = _Deferred(self._flush)
        if not self._flusher.scheduled:
            delay = max(0.0, self._last_flush + self.settings.progress_interval - time.monotonic())
            self._flusher.schedule(delay)

    async def _flush(self) -> None:
        value, message = self.context.progress_value, self.context.progress_message
        if value is None or value == self._flushed:
            return
        self._last_flush = time.monotonic()

        async def write(conn: Connection) -> tuple[bool | None]:
            return (await jobs.report_progress(conn, self.job, value, message),)

        answer = await self.link.try_call(write)
        if answer is None:
            return  # the database is away: the next report or the outcome will carry it
        if answer[0] is None:
            self.request_stop(StopReason.LOST)
            return
        self._flushed = value
        logger.info("Job %s progress: %s%%", self.job.id, value)
        if answer[0]:
            self.request_stop(StopReason.REQUESTED)

    # Log lines: captured into `self.log` (capture.CaptureHandler), written a FLUSH_INTERVAL after
    # the first one waiting, and at the end of the attempt.

    def _lines_waiting(self) -> None:
        """Called in whichever thread the task logged from; the write is scheduled in the loop,
        outside the task's context (the write's own logging is not the task's)."""
        self._loop.call_soon_threadsafe(self._schedule_log_write, context=contextvars.Context())

    def _schedule_log_write(self) -> None:
        if self.log.closed:
            return  # the last lines went with the end of the attempt
        if self._log_writer is None:
            self._log_writer = _Deferred(self._write_waiting_lines)
        if not self._log_writer.scheduled:
            self._log_writer.schedule(capture.FLUSH_INTERVAL)

    async def _write_waiting_lines(self) -> None:
        lines = self.log.take()
        if lines and not await self._write_log(lines):
            self.log.put_back(lines)

    async def _write_log(self, lines: list[job_logs.NewLine]) -> bool:
        """Store lines; False when the database is away (a refusal drops them, with a warning)."""

        async def write(conn: Connection) -> bool:
            await job_logs.write(conn, self.job.id, self.job.attempt, lines)
            return True

        try:
            return await self.link.try_call(write) is not None
        except psycopg.Error as error:
            logger.warning("Job %s: %d log lines could not be stored: %s", self.job.id, len(lines), error)
            return True
