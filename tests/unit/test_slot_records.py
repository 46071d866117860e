"""How a slot records outcomes: refused completions, the exchanges the heartbeat must know of,
outcomes the database refuses, and when a job is still its worker's to keep."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from pgjobs.states import JobState
from pgjobs.store.connecting import DatabaseSettings
from pgjobs.store.records import ClaimAnswer, ClaimedJob
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

    async def call(self, operation: Any, **_: Any) -> ClaimAnswer:
        return ClaimAnswer(False, None)

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
        lambda worker: SimpleNamespace(state=JobState.RUNNING, worker_id=worker.id, attempt=2),  # stopped
        lambda worker: SimpleNamespace(state=JobState.COMPLETED, worker_id=None, attempt=2),  # by another
        lambda worker: SimpleNamespace(state=JobState.COMPLETED, worker_id=worker.id, attempt=3),  # rerun
        lambda worker: None,  # deleted
    ],
)
def test_a_completion_refused_for_another_reason_is_counted(
    row_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    refused, log = _refused_completion(row_of, caplog)
    assert refused == 1 and "refused" in log


class _BlockingLink:
    """Holds every call until released, so a test can look at the slot meanwhile."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def call(self, operation: Any, **_: Any) -> Any:
        self.entered.set()
        await self.release.wait()
        return self.answer


def test_a_slot_shows_it_is_exchanging_while_a_claim_or_an_outcome_is_on_its_way() -> None:
    """The heartbeat hands back held leases no slot runs, unless an exchange may explain them:
    a claim whose answer is not read yet, or an outcome not written yet."""

    async def scenario() -> None:
        worker = Worker(DatabaseSettings(), WorkerSettings())
        slot: Any = worker.slots[0]
        slot.link = link = _BlockingLink(ClaimAnswer(False, None))  # the claim finds nothing
        claiming = asyncio.create_task(slot._claim())
        await link.entered.wait()
        assert (slot.exchanging, slot.exchanges) == (True, 0)
        link.release.set()
        assert await claiming is None
        assert (slot.exchanging, slot.exchanges) == (False, 1)

        slot.link = link = _BlockingLink(ClaimAnswer(True, None))  # the completion, nothing chained
        processing = asyncio.create_task(slot._process(JOB))
        await link.entered.wait()
        assert slot.execution is None and slot.exchanging, "the job's lease is held, run by nobody"
        link.release.set()
        assert await processing is None
        assert (slot.exchanging, slot.exchanges) == (False, 2)

    asyncio.run(scenario())


def test_an_outcome_the_database_refuses_fails_the_job_instead_of_the_worker() -> None:
    async def scenario() -> list[Outcome]:
        worker = Worker(DatabaseSettings(), WorkerSettings())
        slot: Any = worker.slots[0]
        written: list[Outcome] = []

        async def refused(*_: Any) -> None:
            raise psycopg.DataError("invalid input syntax for type json")

        async def write(job: ClaimedJob, outcome: Outcome) -> JobState:
            written.append(outcome)
            return JobState.FAILED

        slot._record, slot._write_outcome = refused, write
        assert await slot._process(JOB) is None
        assert not slot.exchanging
        return written

    [outcome] = asyncio.run(scenario())
    assert (outcome.verdict, outcome.final) == (Verdict.FAILED, True)
    assert outcome.message == "its outcome could not be stored: invalid input syntax for type json"


def test_a_job_is_kept_while_heartbeats_are_recent_or_its_claim_is_fresh() -> None:
    worker = Worker(DatabaseSettings(), WorkerSettings(heartbeat_interval=1, stall_timeout=10))
    now = time.monotonic()
    worker._last_heartbeat = now - 3
    assert worker.keeps(now - 100), "in contact"
    worker._last_heartbeat = now - 11  # silent past the stall timeout
    assert worker.keeps(now - 1), "claimed during the silence, still fresh"
    assert not worker.keeps(now - 8.5), "fresh for stall - 2 intervals only"
    assert not worker.keeps(now - 100)
