"""What a running task sees: its job, progress reporting, a logger, and the stop request.

Sync tasks run in threads and async tasks in the worker's event loop; every method here is
safe to call from either. Progress is only recorded here: the worker writes it out, throttled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

_TASK_LOGGER = logging.getLogger("pgjobs.task")
_EVENTS_LOCK = threading.Lock()


class JobStopped(Exception):
    """Raised by a task (or `raise_if_stopped`) to end a job that was asked to stop."""


class TaskContext:
    """Handed to every task as its first argument."""

    def __init__(
        self,
        job_id: int,
        attempt: int,
        max_attempts: int,
        args: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        on_progress: Callable[[], None],
        still_held: Callable[[], bool] = lambda: True,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.args = args
        self._loop = loop
        self._on_progress = on_progress
        #: False once the job may have been rescued (the worker out of touch with the database
        #: past the stall timeout, and the claim no longer fresh): it may be running elsewhere
        #: by now, so it must not go on here.
        self._still_held = still_held
        # Most tasks never wait for a stop: the events are made on first use (a worker's per-job
        # cost), and `_stopped` alone answers the checks. `_EVENTS_LOCK` orders a thread making
        # `_stop` against the loop setting it, so a stop is never missed.
        self._stopped = False
        self._stop: threading.Event | None = None
        self._async_stop: asyncio.Event | None = None
        self.stop_reason: str | None = None
        self.progress_value: int | None = None
        self.progress_message: str | None = None

    @functools.cached_property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The task's logger: records carry the job id."""
        return logging.LoggerAdapter(_TASK_LOGGER, {"job_id": self.job_id})

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress from 0 to 100; cheap to call often (the worker throttles writes)."""
        value = max(0, min(100, int(percent)))
        self.progress_value, self.progress_message = value, message
        self._call_in_loop(self._on_progress)

    @property
    def stop_requested(self) -> bool:
        self._check_contact()
        return self._stopped

    def raise_if_stopped(self) -> None:
        self._check_contact()
        if self._stopped:
            raise JobStopped(self.stop_reason or "stop requested")

    def sleep(self, seconds: float) -> bool:
        """Sleep in a sync task; returns False early when a stop is requested."""
        return not self._stop_event().wait(seconds) and not self.stop_requested

    async def asleep(self, seconds: float) -> bool:
        """Sleep in an async task; returns False early when a stop is requested."""
        try:
            async with asyncio.timeout(seconds):
                await self._async_stop_event().wait()
        except TimeoutError:
            return not self.stop_requested
        return False

    async def stopped(self) -> None:
        """Wait until a stop is requested."""
        await self._async_stop_event().wait()

    def request_stop(self, reason: str) -> None:
        """Called by the worker (in its loop): stop requested, timeout, or shutdown."""
        if self.stop_reason is None:
            self.stop_reason = reason
        with _EVENTS_LOCK:
            self._stopped = True
            if self._stop is not None:
                self._stop.set()
        if self._async_stop is not None:
            self._async_stop.set()

    def _stop_event(self) -> threading.Event:
        with _EVENTS_LOCK:
            if self._stop is None:
                self._stop = threading.Event()
                if self._stopped:
                    self._stop.set()
            return self._stop

    def _async_stop_event(self) -> asyncio.Event:
        # Only ever made and set in the loop's thread: no lock needed.
        if self._async_stop is None:
            self._async_stop = asyncio.Event()
            if self._stopped:
                self._async_stop.set()
        return self._async_stop

    def _check_contact(self) -> None:
        if not self._stopped and not self._still_held():
            self.request_stop("the worker lost contact with the database")
            self._call_in_loop(self._on_progress)  # wakes the worker to notice the stop

    def _call_in_loop(self, callback: Callable[[], None]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            callback()
        else:
            self._loop.call_soon_threadsafe(callback)
