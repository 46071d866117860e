"""Mixed worker fleets, the pure parts: a worker claims with its task names, a pending job no
live worker can run shows as the condition Runnable=False and in `pgjobs jobs`, and loses both
once it can run again."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import uuid

import pytest

from pgjobs.cli import listings, queue
from pgjobs.cli.options import UserError
from pgjobs.operator import syncing
from pgjobs.operator.settings import OperatorSettings
from pgjobs.states import JobState, Priority
from pgjobs.store import hotpath, queries
from pgjobs.store.connecting import DatabaseSettings
from pgjobs.store.records import Job
from pgjobs.store.resources import SyncRow
from pgjobs.tasks import registry
from pgjobs.worker.running import Worker
from pgjobs.worker.settings import WorkerSettings

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
MARKED = T0 + datetime.timedelta(minutes=2)


def sync_row(**changes: object) -> SyncRow:
    base = SyncRow(
        id=7, task="report", priority=Priority.REGULAR, queue="reports", state=JobState.PENDING,
        attempt=0, max_attempts=3, progress=0, message=None, result=None, restarts=0, run_after=T0,
        created_at=T0, started_at=None, finished_at=None, resource_uid="uid-1",
        resource_namespace="ns", resource_name="job", change_count=2, observed_generation=1,
        synced_state=JobState.PENDING, synced_attempt=0, worker_name=None,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def runnable(row: SyncRow) -> list[dict[str, object]]:
    return [c for c in syncing.conditions_of(row) if c["type"] == "Runnable"]


def test_a_marked_pending_job_has_the_condition_naming_task_queue_and_remedy() -> None:
    [condition] = runnable(sync_row(no_worker_since=MARKED))
    assert condition["status"] == "False" and condition["reason"] == "NoWorkerForTask"
    assert condition["lastTransitionTime"] == "2026-01-01T12:02:00Z"
    message = str(condition["message"])
    assert "'report'" in message and "'reports'" in message and "--tasks" in message
    status = syncing.status_of(sync_row(no_worker_since=MARKED), T0)
    assert status["phase"] == "Pending"
    assert status["message"] == "no live worker runs task 'report' on queue 'reports'"


def test_the_condition_goes_once_unmarked_or_no_longer_pending() -> None:
    assert runnable(sync_row()) == []
    assert runnable(sync_row(state=JobState.RUNNING, attempt=1, started_at=T0, no_worker_since=MARKED)) == []
    assert syncing.status_of(sync_row(), T0)["message"] == ""


def test_a_retry_keeps_its_message_and_adds_the_missing_worker() -> None:
    row = sync_row(
        attempt=1, message="boom", run_after=T0 + datetime.timedelta(hours=1), no_worker_since=MARKED
    )
    assert syncing.message_of(row, T0).endswith("; no live worker runs task 'report' on queue 'reports'")


def job(**changes: object) -> Job:
    base = Job(
        id=7, task="report", args={}, priority=Priority.REGULAR, queue="reports",
        state=JobState.PENDING, attempt=0, max_attempts=3, progress=0, message=None, result=None,
        worker_id=None, worker_name=None, stop_requested=False, restarts=0, run_after=T0,
        created_at=T0, started_at=None, finished_at=None, resource_uid=None,
        resource_namespace=None, resource_name=None, ttl_seconds_after_finished=None,
        change_count=1,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_pgjobs_jobs_notes_a_job_no_worker_can_run() -> None:
    now = MARKED + datetime.timedelta(minutes=3)
    table = listings.format_jobs([job(no_worker_since=MARKED), job(id=8, task="sleep")], now)
    header, first, second = table.splitlines()
    assert header.split()[-1] == "NOTE"
    assert first.endswith("no worker for task report on queue reports (3m)")
    assert "no worker" not in second
    assert job(no_worker_since=MARKED).as_json()["no_worker_since"] == MARKED.isoformat()


def test_pgjobs_jobs_has_no_note_column_when_every_job_can_run() -> None:
    table = listings.format_jobs([job(), job(id=8, state=JobState.RUNNING, no_worker_since=MARKED)], MARKED)
    assert "NOTE" not in table.splitlines()[0]


def test_the_delay_is_defined_once_and_longer_than_the_stall_timeout() -> None:
    settings = OperatorSettings()
    assert settings.no_worker_after == 120.0 and settings.no_worker_after > settings.stall_timeout


def test_a_worker_claims_with_the_names_of_the_tasks_it_runs() -> None:
    registry.load(["pgjobs.tasks.builtins"], entry_points=False)
    worker = Worker(DatabaseSettings(), WorkerSettings())
    assert "noop" in worker.tasks and "shell" not in worker.tasks  # shell only with --enable-shell
    assert set(worker.tasks) == set(registry.names()) - {"shell"}
    enabled = Worker(DatabaseSettings(), WorkerSettings(enable_shell=True))
    assert enabled.tasks == tuple(registry.names())


def test_the_hot_statement_sends_the_task_names_as_a_text_array() -> None:
    _, names = hotpath.to_positional(queries.STATEMENTS["job_complete_and_claim"])
    assert "tasks" in names and hotpath.PARAMETER_TYPES["tasks"] == 1009
    worker_id = uuid.uuid4()
    assert hotpath._identity(worker_id, ["a"], ["noop", 'we"ird'])[2] == b'{"noop","we\\"ird"}'
    assert hotpath._identity(worker_id, ["a"], None)[2] is None


@pytest.mark.parametrize(
    ("command", "force", "refused"),
    [("stop", False, True), ("stop", True, False), ("delete", False, True), ("delete", True, True)],
)
def test_a_pgjobs_row_changes_through_kubectl_and_its_deletion_never_here(
    command: str, force: bool, refused: bool
) -> None:
    owned = job(resource_uid="u", resource_namespace="team-a", resource_name="nightly")
    args = argparse.Namespace(command=command, force=force)
    if not refused:
        queue._refuse_pgjob_rows(owned, args)
        return
    with pytest.raises(UserError) as error:
        queue._refuse_pgjob_rows(owned, args)
    kubectl = (
        "kubectl delete pgjob nightly -n team-a" if command == "delete" else "kubectl pgjobs stop nightly"
    )
    assert kubectl in str(error.value)
    assert ("--force" in str(error.value)) is (command != "delete")
    queue._refuse_pgjob_rows(job(), args)  # a job without a PgJob is this command's to change


def test_a_job_waiting_for_its_run_at_is_scheduled_until_it_starts() -> None:
    later = sync_row(run_after=T0 + datetime.timedelta(minutes=10))
    (scheduled,) = [c for c in syncing.conditions_of(later) if c["type"] == "Scheduled"]
    assert scheduled["status"] == "True" and "not claimed before" in scheduled["message"]
    at_once = sync_row(run_after=T0)
    retrying = sync_row(run_after=T0 + datetime.timedelta(minutes=10), attempt=1)
    for row in (at_once, retrying):
        assert "Scheduled" not in [c["type"] for c in syncing.conditions_of(row)]
