"""Which held leases a worker hands back: only those no slot runs and no exchange explains."""

from __future__ import annotations

from typing import Any

from pgjobs.store.connecting import DatabaseSettings
from pgjobs.worker.running import Worker
from pgjobs.worker.settings import WorkerSettings
from pgjobs.worker.slots import SlotState


class _Running:
    def __init__(self, lease: int) -> None:
        self.job = type("Job", (), {"lease": lease})()


def _worker(slots: int = 2) -> Worker:
    return Worker(DatabaseSettings(), WorkerSettings(concurrency=slots))


def _run(worker: Worker, index: int, lease: int) -> None:
    slot: Any = worker.slots[index]
    slot.execution = _Running(lease)


def test_a_lease_no_slot_runs_is_handed_back_at_the_second_heartbeat() -> None:
    worker = _worker()
    _run(worker, 0, 7)
    assert worker._orphans(frozenset({7, 8})) == []  # first sighting: wait one more heartbeat
    assert worker._orphans(frozenset({7, 8})) == [8]
    assert worker._orphans(frozenset({7})) == []  # gone: forgotten


def test_an_exchange_under_way_may_be_about_to_learn_of_the_lease() -> None:
    worker = _worker()
    claiming = worker.slots[1]
    claiming.state = SlotState.CLAIMING  # its claim may have committed 8, its answer not read yet
    assert worker._orphans(frozenset({8})) == []
    assert worker._orphans(frozenset({8})) == [], "the same exchange is still under way"
    claiming.exchanges += 1  # that exchange ended (its answer read, or lost and claimed again)
    assert worker._orphans(frozenset({8})) == [8]


def test_a_lease_that_a_slot_came_to_run_is_not_an_orphan() -> None:
    worker = _worker()
    worker.slots[1].state = SlotState.CLAIMING
    assert worker._orphans(frozenset({8})) == []
    worker.slots[1].state = SlotState.READY
    worker.slots[1].exchanges += 1
    _run(worker, 1, 8)  # the answer arrived: the slot runs it
    assert worker._orphans(frozenset({8})) == []
    assert worker._orphans(frozenset({8})) == []
