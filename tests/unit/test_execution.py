"""One job's execution without a database: what a task that cannot even start does to its slot."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator

import pytest

from pgjobs.store.connecting import DatabaseSettings
from pgjobs.store.records import ClaimedJob
from pgjobs.tasks import registry
from pgjobs.worker.execution import Execution, Verdict
from pgjobs.worker.links import Link
from pgjobs.worker.settings import WorkerSettings


@pytest.fixture
def broken_task() -> Iterator[str]:
    """A task said to be async whose call returns no coroutine: the runner cannot be made."""
    task = registry.Task("broken_async", lambda context: None)
    task.__dict__["is_async"] = True  # what functools.cached_property would have stored
    registry._tasks[task.name] = task
    yield task.name
    del registry._tasks[task.name]


def test_a_task_whose_call_fails_at_once_fails_the_job_not_the_slot(broken_task: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    job = ClaimedJob(1, broken_task, {}, 1, 1, 0, None, 1, now, now)

    async def run() -> None:
        link = Link(DatabaseSettings(), "test")
        outcome = await Execution(job, WorkerSettings(), link, lambda: True).run()
        assert outcome.verdict is Verdict.FAILED and "TypeError" in (outcome.message or "")

    asyncio.run(run())
