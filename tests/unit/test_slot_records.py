"""How a slot reads a refused completion: its own write whose answer was lost, or another's."""

from __future__ import annotations

import asyncio
import datetime
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from pgjobs.states import JobState
from pgjobs.store.connecting import DatabaseSettings
from pgjobs.store.records import ClaimedJob
from pgjobs.worker import metrics
from pgjobs.worker.execution import Outcome, Verdict
from pgjobs.worker.running import Worker
from pgjobs.worker.settings import WorkerSettings

NOW = datetime.datetime.now(datetime.UTC)
JOB = ClaimedJob(7, "noop", {}, 2, 3, 0, None, 41, NOW, NOW)


class _RefusingLink:
    """The completion was refused when sent again; the row then says `row`."""

    def __init__(self, row: Any) -> None:
        self.row = row

    async def call(self, operation: Any, **_: Any) -> tuple[bool, None]:
        return False, None

    async def try_call(self, operation: Any) -> Any:
        return self.row


def _refused_completion(row_of: Any, caplog: pytest.LogCaptureFixture) -> tuple[float, str]:
    worker = Worker(DatabaseSettings(), WorkerSettings())
    slot: Any = worker.slots[0]
    slot.link = _RefusingLink(row_of(worker))
    before = metrics.FENCED_WRITES_REFUSED._value.get()
    with caplog.at_level(logging.INFO, logger="pgjobs.worker"):
        asyncio.run(slot._record_completion(JOB, Outcome(Verdict.COMPLETED), 0.5))
    return metrics.FENCED_WRITES_REFUSED._value.get() - before, caplog.text


def test_a_completion_whose_first_answer_was_lost_is_not_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    refused, log = _refused_completion(
        lambda worker: SimpleNamespace(state=JobState.COMPLETED, worker_id=worker.id, attempt=2), caplog
    )
    assert refused == 0 and "the first answer was lost" in log


@pytest.mark.parametrize(
    "row_of",
    [
        lambda worker: SimpleNamespace(state=JobState.RUNNING, worker_id=None, attempt=3),  # rescued
        lambda worker: SimpleNamespace(state=JobState.COMPLETED, worker_id=None, attempt=3),  # by another
        lambda worker: None,  # deleted
    ],
)
def test_a_completion_refused_for_another_reason_is_counted(
    row_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    refused, log = _refused_completion(row_of, caplog)
    assert refused == 1 and "refused" in log
