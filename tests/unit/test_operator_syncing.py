"""The status sync: the write budget, the status and conditions, the Events, and the copy loop with fakes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import types
from collections.abc import AsyncIterator

import pytest

from pgjobs.operator import kube, syncing
from pgjobs.operator.settings import OperatorSettings
from pgjobs.states import JobState, Priority
from pgjobs.store.resources import SyncRow

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def row(**changes: object) -> SyncRow:
    base = SyncRow(
        id=7, task="sleep", priority=Priority.HIGH, queue="default", state=JobState.PENDING, attempt=0,
        max_attempts=3, progress=0, message=None, result=None, restarts=0, run_after=T0, created_at=T0,
        started_at=None, finished_at=None, resource_uid="uid-1", resource_namespace="ns",
        resource_name="job", change_count=1, observed_generation=1, synced_state=None, synced_attempt=0,
        worker_name=None,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = syncing.TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert bucket.try_take() == 0 and bucket.try_take() == 0
    assert bucket.try_take() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.try_take() == 0
    now[0] = 100.0  # idle time does not accumulate beyond the burst
    assert [bucket.try_take() for _ in range(3)][:2] == [0, 0]


def test_token_bucket_take_waits_for_the_rate() -> None:
    async def take_five() -> float:
        bucket = syncing.TokenBucket(rate=20, burst=1)
        start = asyncio.get_running_loop().time()
        for _ in range(5):
            await bucket.take()
        return asyncio.get_running_loop().time() - start

    assert asyncio.run(take_five()) >= 0.19


def test_token_bucket_refuses_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="positive"):
        syncing.TokenBucket(rate=0)


def test_status_of_a_running_job() -> None:
    running = row(state=JobState.RUNNING, attempt=1, progress=40, started_at=T0, worker_name="w-1")
    status = syncing.status_of(running, T0)
    assert status["phase"] == "Running" and status["progressPercent"] == "40%"
    assert status["worker"] == "w-1" and status["attempts"] == 1 and status["jobId"] == 7
    assert status["startedAt"] == "2026-01-01T12:00:00Z" and status["finishedAt"] is None
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Running"]["status"] == "True" and conditions["Succeeded"]["status"] == "Unknown"


def test_status_of_a_failed_job_and_a_waiting_retry() -> None:
    failed = row(state=JobState.FAILED, attempt=3, message="boom", finished_at=T0)
    conditions = {c["type"]: c for c in syncing.status_of(failed, T0)["conditions"]}
    assert conditions["Succeeded"] == {
        "type": "Succeeded", "status": "False", "reason": "Failed", "message": "boom",
        "lastTransitionTime": "2026-01-01T12:00:00Z", "observedGeneration": 1,
    }  # fmt: skip
    retry = row(attempt=1, message="boom", run_after=T0 + datetime.timedelta(seconds=10))
    assert syncing.message_of(retry, T0) == "boom; next attempt 2/3 at 2026-01-01T12:00:10Z"


def test_small_result() -> None:
    assert syncing.small_result(None) is None
    assert syncing.small_result(5) == {"value": 5}
    assert syncing.small_result({"x": "y" * 10000}) == {"truncated": True, "bytes": 10008}


@pytest.mark.parametrize(
    ("before", "before_attempt", "changes", "reasons"),
    [
        (JobState.PENDING, 0, {"state": JobState.RUNNING, "attempt": 1}, ["Started"]),
        (JobState.RUNNING, 1, {"state": JobState.RUNNING, "attempt": 1, "progress": 50}, []),
        (JobState.RUNNING, 1, {"state": JobState.COMPLETED, "attempt": 1}, ["Completed"]),
        (JobState.PENDING, 0, {"state": JobState.COMPLETED, "attempt": 1}, ["Completed"]),
        (JobState.RUNNING, 1, {"state": JobState.RUNNING, "attempt": 2}, ["Started"]),
        (JobState.RUNNING, 1, {"state": JobState.FAILED, "attempt": 3, "message": "x"}, ["Failed"]),
        (JobState.RUNNING, 1, {"state": JobState.STOPPED, "attempt": 1}, ["Stopped"]),
        (JobState.RUNNING, 1, {"attempt": 1, "message": "boom"}, ["Requeued"]),
        (JobState.RUNNING, 1, {"attempt": 1, "message": "worker stopped heartbeating during"}, ["Rescued"]),
        (None, 0, {}, []),
    ],
)
def test_transitions(
    before: JobState | None, before_attempt: int, changes: dict[str, object], reasons: list[str]
) -> None:
    current = row(synced_state=before, synced_attempt=before_attempt, **changes)
    assert [reason for _, reason, _ in syncing.transitions(current)] == reasons


class FakeSync:
    """The database and API server the Syncer sees: rows with change counts, status patches."""

    def __init__(self, rows: list[SyncRow], failures: int = 0) -> None:
        self.rows = {r.id: r for r in rows}
        self.synced: dict[int, int] = {}
        self.patched: list[int] = []
        self.failures = failures  # the first patches fail (API server away)

    async def list_unsynced(
        self, _conn: object, limit: int, busy: list[int], *_turns: object
    ) -> list[SyncRow]:
        due = [r for r in self.rows.values() if self.synced.get(r.id) != r.change_count and r.id not in busy]
        return sorted(due, key=lambda r: r.id)[:limit]

    async def mark_synced(self, _conn: object, copied: list[SyncRow]) -> None:
        for copy in copied:
            self.synced[copy.id] = max(self.synced.get(copy.id, 0), copy.change_count)

    async def patch_status(self, _ns: str, _name: str, _status: object, _uid: str) -> bool:
        if self.failures:
            self.failures -= 1
            raise OSError("connection refused")
        self.patched.append(_status["jobId"])  # type: ignore[index]
        return True

    async def post_event(self, *_: object) -> None:
        return None

    async def mark_no_worker(self, _conn: object, _after: float) -> tuple[int, int]:
        return 0, 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        yield None


def syncer_context(fake: FakeSync, monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """What a Syncer needs, the fake in place of the database and the API server."""
    monkeypatch.setattr(syncing.resources, "list_unsynced", fake.list_unsynced)
    monkeypatch.setattr(syncing.resources, "mark_synced", fake.mark_synced)
    monkeypatch.setattr(syncing.jobs, "mark_no_worker", fake.mark_no_worker)
    settings = OperatorSettings(status_writes_per_second=1000.0, sync_interval=0.01)
    return types.SimpleNamespace(
        settings=settings, kube=fake, sync_database=fake, fence=lambda: None, went_round=lambda duty: None
    )


def run_syncer(fake: FakeSync, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a Syncer against the fake until every row is copied and recorded."""
    ctx = syncer_context(fake, monkeypatch)

    async def until_copied() -> None:
        task = asyncio.create_task(syncing.Syncer(ctx).run())  # type: ignore[arg-type]
        try:
            while any(fake.synced.get(r.id) != r.change_count for r in fake.rows.values()):
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(asyncio.wait_for(until_copied(), 10))


def test_syncer_copies_every_changed_row_once_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [row(id=n, resource_name=f"job-{n}") for n in range(1, 41)]  # more than the queue holds
    fake = FakeSync(rows)
    run_syncer(fake, monkeypatch)
    assert sorted(fake.patched) == list(range(1, 41))


def test_syncer_retries_a_failed_write(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSync([row(id=1), row(id=2)], failures=3)
    run_syncer(fake, monkeypatch)
    assert sorted(fake.patched) == [1, 2] and fake.synced == {1: 1, 2: 1}


class RefusingStaleOnce(FakeSync):
    """An API server that stores a status read later than the Syncer's first write (another
    replica's clock ahead); the next read is newer."""

    def __init__(self, rows: list[SyncRow]) -> None:
        super().__init__(rows)
        self.refused: list[str] = []

    async def patch_status(self, _ns: str, _name: str, status: object, _uid: str) -> bool:
        assert isinstance(status, dict)
        if len(self.refused) < 2:
            self.refused.append(status["syncedAt"])
            raise kube.StaleStatus("422 a status older than the one stored")
        assert status["syncedAt"] > max(self.refused), "copied again from the same read"
        return await super().patch_status(_ns, _name, status, _uid)


def test_a_status_refused_as_stale_is_read_and_copied_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = RefusingStaleOnce([row(id=1), row(id=2)])
    run_syncer(fake, monkeypatch)
    assert fake.synced == {1: 1, 2: 1} and sorted(fake.patched) == [1, 2]


class LosingCancellation(FakeSync):
    """A pool that hands out a connection just as the cancellation comes, and drops the
    cancellation (psycopg_pool waits with asyncio.wait_for, which did so before Python 3.12)."""

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)  # no connection until the step-down comes
        yield None


def test_a_syncer_stops_when_a_cancellation_is_lost_on_the_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step-down cancels the Syncer; a read that returns rows as if no cancellation came
    must not leave the reader waiting for writers already gone (it held a failover's step-down
    for its whole timeout)."""
    fake = LosingCancellation([row(id=n, resource_name=f"job-{n}") for n in range(1, 41)])
    ctx = syncer_context(fake, monkeypatch)

    async def cancelled() -> bool:
        task = asyncio.create_task(syncing.Syncer(ctx).run())  # type: ignore[arg-type]
        await asyncio.sleep(0.1)  # every loop waits for a connection
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        return bool(done)

    assert asyncio.run(cancelled()), "the Syncer did not stop"


def test_normal_events_are_skipped_under_a_backlog_warnings_are_not() -> None:
    settings = OperatorSettings(status_writes_per_second=50.0)
    syncer = syncing.Syncer(types.SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    for _ in range(syncing.NORMAL_EVENT_BACKLOG):
        syncer._queue_event(row(), "Normal", "Completed", "")
    syncer._queue_event(row(), "Normal", "Completed", "")
    syncer._queue_event(row(), "Warning", "Failed", "boom")
    assert syncer.events.qsize() == syncing.NORMAL_EVENT_BACKLOG + 1
    assert syncer.events.get_nowait()[2] == "Completed"


def test_statuses_may_burst_above_the_rate_and_events_may_not() -> None:
    settings = OperatorSettings(status_writes_per_second=50.0, status_write_burst=500)
    syncer = syncing.Syncer(types.SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    assert syncer.bucket.rate == 50.0 and syncer.bucket.burst == 500
    assert syncer.event_bucket.burst == 50.0
