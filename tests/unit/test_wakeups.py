"""Wake-ups inside one worker: a notification wakes one free slot, not every idle one."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from typing import Any

import pytest

from pgjobs.store import jobs, workers
from pgjobs.store.connecting import DatabaseSettings
from pgjobs.store.records import ClaimAnswer, ClaimedJob
from pgjobs.tasks import registry
from pgjobs.worker.running import Worker
from pgjobs.worker.settings import WorkerSettings
from pgjobs.worker.slots import SlotState


def test_one_notification_wakes_one_idle_slot_then_a_claiming_one() -> None:
    async def run() -> None:
        worker = Worker(DatabaseSettings(), WorkerSettings(concurrency=3))
        waits = [asyncio.create_task(slot._idle(5)) for slot in worker.slots[:2]]
        await asyncio.sleep(0)  # both wait; slot 2 is "claiming" (neither idle nor running)
        worker.wake_one_slot()
        await asyncio.sleep(0)
        assert [wait.done() for wait in waits] == [True, False]
        assert [slot.wake_pending for slot in worker.slots] == [True, False, False]
        worker.wake_one_slot(besides=worker.slots[0])  # the relay of a slot that found work
        await asyncio.wait_for(waits[1], 1)
        worker.wake_one_slot()  # nobody idle: the claiming slot is told to claim again
        assert [slot.wake_pending for slot in worker.slots] == [True, True, True]
        worker.wake_one_slot()  # every free slot already woken: nothing more to do

    asyncio.run(run())


def test_an_idle_slot_polls_without_a_wake_up_and_a_pending_wake_up_skips_the_wait() -> None:
    async def run() -> None:
        worker = Worker(DatabaseSettings(), WorkerSettings())
        slot = worker.slots[0]
        await asyncio.wait_for(slot._idle(0.01), 1)
        slot.wake()
        await asyncio.wait_for(slot._idle(5), 0.1)
        assert not slot.idle

    asyncio.run(run())


class _Running:
    job = None


def _named_worker(
    concurrency: int = 1, *, listen: bool = True, burst: bool = False
) -> tuple[Worker, list[str]]:
    """A worker whose passing-on is recorded instead of sent."""
    settings = WorkerSettings(concurrency=concurrency, burst=burst)
    worker = Worker(DatabaseSettings(), settings, listen=listen)
    passed: list[str] = []
    worker._pass_on = lambda: passed.append("passed on")  # type: ignore[method-assign]
    return worker, passed


async def _waiting(worker: Worker) -> list[asyncio.Task[None]]:
    """Every slot of `worker` waiting for work, as an idle slot does."""
    waits = [asyncio.create_task(slot._idle(5)) for slot in worker.slots]
    await asyncio.sleep(0)
    return waits


def test_a_wake_up_for_another_worker_is_ignored() -> None:
    worker, passed = _named_worker()
    worker._notified(workers.wake_channel(uuid.uuid4()), "7")
    assert not worker.slots[0].wake_pending and passed == []


def test_a_wake_up_for_this_worker_or_for_all_wakes_a_waiting_slot() -> None:
    async def run() -> None:
        for own_channel in (False, True):
            worker, passed = _named_worker()
            waits = await _waiting(worker)
            worker._notified(workers.wake_channel(worker.id) if own_channel else workers.JOBS_CHANNEL, "7")
            async with asyncio.timeout(1):
                await waits[0]
            assert passed == []

    asyncio.run(run())


def test_chosen_with_no_slot_waiting_or_while_stopping_passes_the_wake_up_on() -> None:
    async def run() -> None:
        busy, passed = _named_worker()
        busy.slots[0].execution = _Running()  # type: ignore[assignment]
        busy._notified(workers.wake_channel(busy.id), "7")
        assert passed == ["passed on"]

        # A slot claiming now may come back with another job: the wake-up must not stop there.
        claiming, passed = _named_worker()
        claiming._notified(workers.wake_channel(claiming.id), "7")
        assert passed == ["passed on"]

        stopping, passed = _named_worker()
        await _waiting(stopping)
        stopping.stopping = True
        stopping._notified(workers.wake_channel(stopping.id), "7")
        assert passed == ["passed on"]

        twice, passed = _named_worker()
        await _waiting(twice)
        twice._notified(workers.wake_channel(twice.id), "7")
        twice._notified(workers.wake_channel(twice.id), "8")  # its one slot is already woken
        assert passed == ["passed on"]

    asyncio.run(run())


def test_a_control_message_naming_this_worker_asks_for_a_heartbeat_not_a_claim() -> None:
    worker, passed = _named_worker()
    worker._notified(workers.CONTROL_CHANNEL, str(worker.id))
    assert worker._beat_now.is_set() and not worker.slots[0].wake_pending and passed == []


def test_the_heartbeat_reports_idle_slots_only_when_a_wake_up_could_be_answered() -> None:
    worker, _ = _named_worker(concurrency=3)
    worker.slots[0].found_none = worker.slots[2].found_none = True
    assert worker.idle_slots() == 0, "not listening yet: a wake-up would be lost"
    worker._listening = True
    assert worker.idle_slots() == 2
    worker.slots[1].state = SlotState.CLAIMING  # its claim's answer may change the count
    assert worker.idle_slots() is None
    worker.slots[1].state = SlotState.READY
    worker.stopping = True
    assert worker.idle_slots() == 0, "shutting down: no new work should come here"
    for never_counted in (_named_worker(listen=False)[0], _named_worker(burst=True)[0]):
        never_counted._listening = True
        never_counted.slots[0].found_none = True
        assert never_counted.idle_slots() is None
        assert not never_counted.counts_idle


class _DirectLink:
    async def call(self, operation: Any, **_: Any) -> Any:
        return await operation(None)


def _recording_slot(
    monkeypatch: pytest.MonkeyPatch, *, burst: bool, first: list[ClaimAnswer] | None = None
) -> tuple[Worker, list[tuple[str, Any]]]:
    """A one-slot worker whose claims answer `first` in turn (by default one noop job), then
    nothing; every call recorded with its `was_idle`, and when it came (`CALLED_AT`)."""
    calls: list[tuple[str, Any]] = []
    now = datetime.datetime.now(datetime.UTC)
    answers = list(first or [ClaimAnswer(False, ClaimedJob(7, "noop", {}, 1, 3, 0, None, 41, now, now))])
    CALLED_AT.clear()

    async def claim_or_wait(
        conn: Any, worker_id: Any, queues: Any, *, was_idle: bool | None, tasks: Any
    ) -> ClaimAnswer:
        calls.append(("claim", was_idle))
        CALLED_AT.append(time.monotonic())
        return answers.pop(0) if answers else ClaimAnswer(False, None)

    async def complete_and_claim(*_: Any, was_idle: bool | None, tasks: Any) -> ClaimAnswer:
        calls.append(("complete and claim", was_idle))
        CALLED_AT.append(time.monotonic())
        return ClaimAnswer(True, None)

    registry.load(["pgjobs.tasks.builtins"], entry_points=False)  # noop
    monkeypatch.setattr(jobs, "claim_or_wait", claim_or_wait)
    monkeypatch.setattr(jobs, "complete_and_claim", complete_and_claim)
    worker = Worker(DatabaseSettings(), WorkerSettings(burst=burst, poll_interval=30))
    worker.slots[0].link = _DirectLink()  # type: ignore[assignment]
    return worker, calls


#: When each call of the last `_recording_slot` came (monotonic seconds).
CALLED_AT: list[float] = []


def test_a_slot_whose_completion_found_no_next_job_does_not_claim_again_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, calls = _recording_slot(monkeypatch, burst=True)
    asyncio.run(asyncio.wait_for(worker.slots[0].run(), 5))
    # A burst worker leaves once the queue is empty, so it is never counted idle (None).
    assert calls == [("claim", None), ("complete and claim", None)]
    assert not worker.slots[0].counted_idle


def test_an_idle_slot_claims_as_counted_idle_when_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    worker, calls = _recording_slot(monkeypatch, burst=False)
    slot = worker.slots[0]

    async def run() -> None:
        running = asyncio.create_task(slot.run())
        async with asyncio.timeout(5):
            while not slot.idle:
                await asyncio.sleep(0.001)
        assert calls == [("claim", False), ("complete and claim", False)], "it waits for a wake-up"
        assert slot.counted_idle
        slot.wake()
        async with asyncio.timeout(5):
            while len(calls) < 3:
                await asyncio.sleep(0.001)
        assert calls[2] == ("claim", True)
        worker.stopping = True
        slot.wake()
        await asyncio.wait_for(running, 5)

    asyncio.run(run())


def test_a_burst_slot_held_back_by_a_rate_waits_for_the_next_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst worker leaves once its queues are empty, not while a rate-limited queue's jobs
    wait for their next start: it claims again then."""
    now = datetime.datetime.now(datetime.UTC)
    job = ClaimedJob(7, "noop", {}, 1, 3, 0, None, 41, now, now)
    throttled, claimed = ClaimAnswer(False, None, 0.05), ClaimAnswer(False, job)
    worker, calls = _recording_slot(monkeypatch, burst=True, first=[throttled, claimed])
    asyncio.run(asyncio.wait_for(worker.slots[0].run(), 5))
    assert [call for call, _ in calls] == ["claim", "claim", "complete and claim"]
    assert CALLED_AT[1] - CALLED_AT[0] >= 0.05, "claimed again before the start was due"


def test_one_throttle_timer_wakes_one_waiting_slot_at_the_earliest_start() -> None:
    async def scenario() -> tuple[int, int]:
        worker = Worker(DatabaseSettings(), WorkerSettings(concurrency=3))
        for slot in worker.slots:
            slot.state = SlotState.WAITING
        worker.wake_later(0.3)
        worker.wake_later(0.05)  # sooner: replaces the 0.3 s timer
        worker.wake_later(1.0)  # later: the 0.05 s one stays
        await asyncio.sleep(0.15)
        early = sum(slot.wake_pending for slot in worker.slots)
        await asyncio.sleep(0.35)
        return early, sum(slot.wake_pending for slot in worker.slots)

    assert asyncio.run(scenario()) == (1, 1)
