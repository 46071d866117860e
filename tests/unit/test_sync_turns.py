"""The status sync's fair turns: where the next read goes on (the read itself is tested at the real
PostgreSQL in tests/integration/test_sync_fairness.py)."""

from __future__ import annotations

import dataclasses
import datetime

from pgjobs.operator import syncing
from pgjobs.states import JobState, Priority
from pgjobs.store.resources import SyncRow

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
RUNNING = SyncRow(
    id=1, task="sleep", priority=Priority.REGULAR, queue="default", state=JobState.RUNNING, attempt=1,
    max_attempts=3, progress=10, message=None, result=None, restarts=0, run_after=T0, created_at=T0,
    started_at=T0, finished_at=None, resource_uid="uid", resource_namespace="a", resource_name="job",
    change_count=3, observed_generation=1, synced_state=JobState.RUNNING, synced_attempt=1,
    worker_name=None,
)  # fmt: skip


def progress(namespace: str, job_id: int) -> SyncRow:
    return dataclasses.replace(RUNNING, id=job_id, resource_namespace=namespace)


def finished(namespace: str, job_id: int) -> SyncRow:
    return dataclasses.replace(progress(namespace, job_id), state=JobState.COMPLETED)


def test_progress_only_is_a_change_that_keeps_state_and_attempt() -> None:
    assert syncing.progress_only(RUNNING)
    assert not syncing.progress_only(dataclasses.replace(RUNNING, state=JobState.COMPLETED))
    assert not syncing.progress_only(dataclasses.replace(RUNNING, attempt=2))  # retried meanwhile
    assert not syncing.progress_only(dataclasses.replace(RUNNING, synced_state=None))  # a new PgJob


def test_the_next_read_goes_on_after_the_namespace_served_last() -> None:
    turns = syncing.Turns()
    assert (turns.namespace, turns.after_ids) == ("", {})
    turns.advance([progress("a", 1), finished("b", 9), progress("c", 5), progress("a", 2)])
    assert turns.namespace == "a"
    turns.advance([])  # nothing to copy: the turn stays where it was
    assert turns.namespace == "a"


def test_each_namespace_goes_on_after_its_progress_row_copied_last() -> None:
    turns = syncing.Turns()
    turns.advance([progress("a", 7), finished("b", 9), progress("a", 8), progress("b", 3)])
    assert turns.after_ids == {"a": 8, "b": 3}  # a state change does not move the round
    turns.advance([progress("a", 2)])  # the round wrapped around
    assert turns.after_ids == {"b": 3, "a": 2}


def test_the_rounds_remembered_are_bounded_the_least_recently_served_go_first() -> None:
    turns = syncing.Turns(max_cursors=2)
    turns.advance([progress("a", 1), progress("b", 2)])
    turns.advance([progress("a", 3), progress("c", 4)])
    assert turns.after_ids == {"a": 3, "c": 4}
