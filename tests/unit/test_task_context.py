"""TaskContext's stop signal (its events are made on first use) and the registry's args check."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pgjobs.tasks import registry
from pgjobs.tasks.context import JobStopped, TaskContext


def _context(loop: asyncio.AbstractEventLoop) -> TaskContext:
    return TaskContext(1, 1, 3, {}, loop, lambda: None)


def test_a_stop_before_any_wait_is_seen_by_every_kind_of_wait() -> None:
    async def run() -> None:
        context = _context(asyncio.get_running_loop())
        context.request_stop("stop requested")
        assert context.stop_requested
        with pytest.raises(JobStopped, match="stop requested"):
            context.raise_if_stopped()
        assert await context.asleep(5) is False
        await asyncio.wait_for(context.stopped(), 1)
        assert await asyncio.to_thread(context.sleep, 5) is False

    asyncio.run(run())


def test_a_stop_wakes_waits_already_under_way() -> None:
    async def run() -> None:
        context = _context(asyncio.get_running_loop())
        in_thread = asyncio.create_task(asyncio.to_thread(context.sleep, 5))
        in_loop = asyncio.create_task(context.asleep(5))
        await asyncio.sleep(0.05)
        context.request_stop("timeout")
        assert await asyncio.wait_for(asyncio.gather(in_thread, in_loop), 2) == [False, False]
        assert context.stop_reason == "timeout"

    asyncio.run(run())


def test_args_that_fit_once_are_remembered_and_others_still_refused() -> None:
    def function(context: Any, url: str, width: int = 800) -> None:
        del context, url, width

    task = registry.Task("t", function)
    task.check_args({"url": "a"})
    task.check_args({"url": "b", "width": 1})
    with pytest.raises(TypeError, match="height"):
        task.check_args({"url": "a", "height": 1})
    with pytest.raises(TypeError, match="url"):
        task.check_args({})
    task.check_args({"url": "c"})


def test_a_thread_and_the_loop_racing_to_stop_never_lose_the_stop() -> None:
    async def run() -> None:
        for _ in range(200):
            context = _context(asyncio.get_running_loop())
            started = threading.Event()

            def wait(ctx: TaskContext = context, ready: threading.Event = started) -> bool:
                ready.set()
                return ctx.sleep(5)

            waiting = asyncio.create_task(asyncio.to_thread(wait))
            await asyncio.to_thread(started.wait)
            context.request_stop("stop")
            assert await asyncio.wait_for(waiting, 2) is False

    asyncio.run(run())
