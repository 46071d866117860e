"""Wake-ups inside one worker: a notification wakes one free slot, not every idle one."""

from __future__ import annotations

import asyncio

from pgjobs.store.connecting import DatabaseSettings
from pgjobs.worker.running import Worker
from pgjobs.worker.settings import WorkerSettings


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
