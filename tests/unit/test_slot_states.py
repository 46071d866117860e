"""A slot's state changes only along its transitions, and every state leads back to READY."""

from __future__ import annotations

import pytest

from pgjobs.store.connecting import DatabaseSettings
from pgjobs.worker.running import Worker
from pgjobs.worker.settings import WorkerSettings
from pgjobs.worker.slots import EXCHANGING, TRANSITIONS, SlotState


def test_every_state_has_its_transitions_and_returns_to_ready() -> None:
    assert set(TRANSITIONS) == set(SlotState)
    for state in SlotState:
        seen, frontier = set(), {state}
        while frontier:
            seen |= frontier
            frontier = {after for before in frontier for after in TRANSITIONS[before]} - seen
        assert SlotState.READY in seen, state


def test_a_slot_refuses_a_transition_not_listed_and_counts_ended_exchanges() -> None:
    slot = Worker(DatabaseSettings(), WorkerSettings()).slots[0]
    assert slot.state is SlotState.READY and not slot.exchanging and not slot.idle
    with pytest.raises(RuntimeError, match="no way from READY to RECORDING"):
        slot._enter(SlotState.RECORDING)
    for state in (SlotState.CLAIMING, SlotState.READY, SlotState.RUNNING, SlotState.RECORDING):
        slot._enter(state)
        assert slot.exchanging == (state in EXCHANGING)
    slot._enter(SlotState.READY)
    assert slot.exchanges == 2
    slot._enter(SlotState.WAITING)
    assert slot.idle and not slot.exchanging
