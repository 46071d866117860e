"""States and priorities: parsing, spelling, and the claim order."""

from __future__ import annotations

import pytest

from pgjobs.states import FINISHED_STATES, JobState, Priority


def test_phases_are_the_old_systems_spelling() -> None:
    assert [state.phase for state in JobState] == ["Pending", "Running", "Completed", "Failed", "Stopped"]


@pytest.mark.parametrize("text", ["Running", "running", " RUNNING "])
def test_from_phase_accepts_any_case(text: str) -> None:
    assert JobState.from_phase(text) is JobState.RUNNING


def test_unknown_phase_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="expected one of Pending, Running, Completed, Failed, Stopped"):
        JobState.from_phase("Sleeping")


def test_finished_states() -> None:
    assert {state for state in JobState if state.is_finished} == FINISHED_STATES
    assert JobState.RUNNING not in FINISHED_STATES


def test_priority_order_and_parsing() -> None:
    assert Priority.HIGH > Priority.REGULAR > Priority.LOW
    assert Priority.parse("high") is Priority.HIGH
    assert Priority.REGULAR.label == "Regular"
    with pytest.raises(ValueError, match="expected one of Low, Regular, High"):
        Priority.parse("Urgent")
