"""A slot runs one job at a time: claim, execute, record the outcome (and claim the next with it).

Where a slot is in that cycle is one `SlotState`, changed only along `TRANSITIONS`; what it
needs of its worker is the `Owner` protocol.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from typing import Protocol

import psycopg

from pgjobs.states import JobState
from pgjobs.store import connecting, jobs
from pgjobs.store.queries import Connection
from pgjobs.store.records import ClaimAnswer, ClaimedJob
from pgjobs.worker import metrics
from pgjobs.worker.execution import Execution, Outcome, Verdict
from pgjobs.worker.links import GaveUp, Link
from pgjobs.worker.settings import WorkerSettings

logger = logging.getLogger("pgjobs.worker")


class SlotState(enum.Enum):
    #: Between steps: not talking to the database, not running a job, not waiting. In: a new
    #: slot, the end of a claim, an outcome or a wait. Out: any of the other states; the slot's
    #: loop also returns from here (shutdown, or a burst worker's queue is empty).
    READY = "ready"
    #: Waiting for a wake-up or the poll timer after a claim found nothing. In/out: READY.
    WAITING = "waiting"
    #: A claim is on its way: the slot may hold a job it does not know of yet. In/out: READY.
    CLAIMING = "claiming"
    #: Running a job (`Slot.execution`). In: READY. Out: RECORDING.
    RUNNING = "running"
    #: The job's outcome (and maybe the next claim) is on its way: the lease is still held, run
    #: by nobody. In: RUNNING. Out: READY.
    RECORDING = "recording"


TRANSITIONS: dict[SlotState, frozenset[SlotState]] = {
    SlotState.READY: frozenset({SlotState.WAITING, SlotState.CLAIMING, SlotState.RUNNING}),
    SlotState.WAITING: frozenset({SlotState.READY}),
    SlotState.CLAIMING: frozenset({SlotState.READY}),
    SlotState.RUNNING: frozenset({SlotState.RECORDING}),
    SlotState.RECORDING: frozenset({SlotState.READY}),
}
#: States in which a statement of the slot is on its way to the database.
EXCHANGING = frozenset({SlotState.CLAIMING, SlotState.RECORDING})


class Owner(Protocol):
    """What a slot needs of its worker (`pgjobs.worker.running.Worker`)."""

    id: uuid.UUID
    settings: WorkerSettings
    #: Shutting down: claim nothing more.
    stopping: bool
    #: A second signal: give up writes that wait for the database.
    force_exit: bool
    #: Whether the worker's row counts idle slots for targeted wake-ups.
    counts_idle: bool
    #: The tasks it can run: a claim takes only jobs of these (None: of any task).
    tasks: tuple[str, ...] | None

    def keeps(self, claimed_at: float) -> bool: ...

    def wake_one_slot(self, besides: Slot | None = None, *, waiting_only: bool = False) -> bool: ...

    def wake_later(self, delay: float) -> None: ...


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Slot:
    def __init__(self, worker: Owner, database: connecting.DatabaseSettings, index: int) -> None:
        self.worker = worker
        self.index = index
        self.link = Link(database, f"slot {index}")
        self.state = SlotState.READY
        #: Set by a wake-up (a notification, a relay, shutdown) since the last claim began: there
        #: may be work the claim under way did not see, or it is time to go.
        self.wake_pending = False
        #: While the slot waits for work: resolved by a wake-up or the poll timer.
        self._idle_wait: asyncio.Future[None] | None = None
        self.execution: Execution | None = None
        #: When the current job was claimed (monotonic), so heartbeats taken before it are ignored.
        self.claimed_at = 0.0
        #: How many claims and outcome writes have ended (see `exchanging`).
        self.exchanges = 0
        #: The slot's last claim (alone or with an outcome) found no job: it claims again only
        #: after a wake-up or a poll, and its worker's row counts it idle.
        self.found_none = False
        #: With found_none: in how many seconds a rate-limited queue of the worker's has a start
        #: again (None: no queue was held back by its rate).
        self.throttled_for: float | None = None

    async def run(self) -> None:
        settings = self.worker.settings
        job: ClaimedJob | None = None
        while True:
            if job is None:
                if self.worker.stopping:
                    return
                if self.found_none:
                    wait = settings.poll_interval
                    if settings.burst:
                        if self.throttled_for is None:
                            return  # the queues are empty: a burst worker is done
                        # Held back by a queue's rate: a burst worker waits for the next start
                        # (others are woken then by their worker's timer, one slot, or poll).
                        wait = self.throttled_for
                    await self._idle(wait)
                    if self.worker.stopping:
                        return
                self.wake_pending = False
                job = await self._claim()
                if job is None:
                    continue
                # One notification wakes one slot; having found work, it passes the wake-up on,
                # so a batch spreads over the idle slots one claim at a time.
                self.worker.wake_one_slot(besides=self)
            job = await self._process(job)

    @property
    def counted_idle(self) -> bool:
        """Whether the worker's row counts this slot idle (the enqueue trigger wakes a worker
        with idle slots; see `Worker.idle_slots`)."""
        return self.found_none and self.worker.counts_idle

    def _was_idle(self) -> bool | None:
        """What the hot statement needs to keep the row's count: whether the slot is counted
        idle now, None for a worker whose idle slots are never counted."""
        return self.found_none if self.worker.counts_idle else None

    @property
    def idle(self) -> bool:
        """Waiting for work (not claiming, not running a job)."""
        return self.state is SlotState.WAITING

    @property
    def exchanging(self) -> bool:
        """Whether a claim or an outcome is on its way to the database: the slot may hold a job
        it does not know of yet (or not any more)."""
        return self.state in EXCHANGING

    def _enter(self, state: SlotState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"slot {self.index}: no way from {self.state.name} to {state.name}")
        if self.state in EXCHANGING:
            self.exchanges += 1
        self.state = state

    def wake(self) -> None:
        self.wake_pending = True
        if self._idle_wait is not None and not self._idle_wait.done():
            self._idle_wait.set_result(None)

    async def _idle(self, timeout: float) -> None:
        if self.wake_pending:
            return
        # A bare future and a timer: fewer hops from a notification to the claim than
        # asyncio.wait_for on an Event (which adds a task).
        loop = asyncio.get_running_loop()
        waiter = self._idle_wait = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter)
        self._enter(SlotState.WAITING)
        try:
            await waiter
        finally:
            timer.cancel()
            self._idle_wait = None
            self._enter(SlotState.READY)

    async def _claim(self) -> ClaimedJob | None:
        worker = self.worker
        was_idle = self._was_idle()

        async def claim(conn: Connection) -> ClaimAnswer:
            return await jobs.claim_or_wait(
                conn, worker.id, worker.settings.queues, was_idle=was_idle, tasks=worker.tasks
            )

        started = time.perf_counter()
        self._enter(SlotState.CLAIMING)
        try:
            answer = await self.link.call(claim, give_up=lambda: worker.stopping)
        except GaveUp:
            return None
        finally:
            self._enter(SlotState.READY)
        metrics.CLAIM_DURATION.observe(time.perf_counter() - started)
        self._answered(answer)
        return answer.job

    def _answered(self, answer: ClaimAnswer) -> None:
        """Note what a claim found: a job, nothing, or nothing for now (a rate-limited queue)."""
        self.found_none = answer.job is None
        self.throttled_for = answer.throttled_for
        if answer.job is not None:
            self._claimed(answer.job)
        elif answer.throttled_for is not None:
            self.worker.wake_later(answer.throttled_for)

    def _claimed(self, job: ClaimedJob) -> None:
        self.claimed_at = time.monotonic()
        waited = time.time() - job.created_at.timestamp()
        if job.attempt == 1:
            metrics.PICKUP_LATENCY.observe(max(0.0, waited))

    def _kept(self) -> bool:
        """Whether this slot's job cannot have been rescued (for the task's own checks)."""
        return self.worker.keeps(self.claimed_at)

    async def _process(self, job: ClaimedJob) -> ClaimedJob | None:
        """Run one job and record its outcome; returns the next job when the record claimed one."""
        self.execution = Execution(job, self.worker.settings, self.link, self._kept)
        self._enter(SlotState.RUNNING)
        try:
            outcome = await self.execution.run()
        finally:
            # From the moment the job is no longer shown as running here until its outcome is
            # written, its lease is still held: the heartbeat must not take it for an orphan.
            self._enter(SlotState.RECORDING)
            self.execution = None
        elapsed = time.monotonic() - self.claimed_at
        metrics.record_job(job.task, outcome.verdict.value, elapsed)
        try:
            return await self._record(job, outcome, elapsed)
        except GaveUp:
            logger.warning(
                "Job %s: outcome (%s) not recorded, the database stayed away; the job goes back "
                "to Pending when it is reachable again (or is rescued if this worker stops first)",
                job.id,
                outcome.verdict.value,
            )
            return None
        except psycopg.DataError as error:
            # The database refused the outcome itself (text it cannot store, say): fail the job
            # with the reason rather than stop the worker with it.
            verdict = outcome.verdict.value
            logger.error("Job %s: its outcome (%s) could not be stored: %s", job.id, verdict, error)
            refused = Outcome(Verdict.FAILED, f"its outcome could not be stored: {error}", final=True)
            await self._write_outcome(job, refused)
            return None
        finally:
            self._enter(SlotState.READY)

    async def _record(self, job: ClaimedJob, outcome: Outcome, elapsed: float) -> ClaimedJob | None:
        if outcome.verdict is Verdict.COMPLETED:
            return await self._record_completion(job, outcome, elapsed)
        if outcome.verdict is Verdict.ABANDONED:
            logger.warning("Job %s abandoned: %s", job.id, outcome.message)
            return None
        state = await self._write_outcome(job, outcome)
        if state is None:
            self._log_refused(job, outcome.verdict.value)
        else:
            self._log_outcome(job, outcome, state, elapsed)
        return None

    async def _record_completion(
        self, job: ClaimedJob, outcome: Outcome, elapsed: float
    ) -> ClaimedJob | None:
        worker = self.worker
        chain = not worker.stopping
        was_idle = self._was_idle()  # False: the slot is busy (None: not counted)

        async def complete(conn: Connection) -> ClaimAnswer:
            if chain:
                return await jobs.complete_and_claim(
                    conn,
                    job,
                    outcome.result,
                    None,
                    worker.id,
                    worker.settings.queues,
                    was_idle=was_idle,
                    tasks=worker.tasks,
                )
            return ClaimAnswer(await jobs.complete(conn, job, outcome.result), None)

        if chain:
            # A wake-up from here on may be for a job this claim misses: it makes the slot claim again.
            self.wake_pending = False
        started = time.perf_counter()
        answer = await self.link.call(complete, give_up=self._give_up)
        if chain:
            metrics.COMPLETE_AND_CLAIM_DURATION.observe(time.perf_counter() - started)
            self._answered(answer)
        else:
            self.found_none, self.throttled_for = False, None
        completed, next_job = answer.completed, answer.job
        if completed:
            logger.info("Job %s completed in %.1fs", job.id, elapsed)
        elif await self._completed_by_us(job):
            logger.info(
                "Job %s completed in %.1fs (the first answer was lost with its connection)", job.id, elapsed
            )
        else:
            self._log_refused(job, "completion")
        return next_job

    async def _completed_by_us(self, job: ClaimedJob) -> bool:
        """Whether a refused completion was ours after all: written, its answer lost with the
        connection, and refused when sent again (rare, so one more read is cheap)."""
        row = await self.link.try_call(lambda conn: jobs.get(conn, job.id))
        return (
            row is not None
            and row.state is JobState.COMPLETED
            and row.worker_id == self.worker.id
            and row.attempt == job.attempt
        )

    async def _write_outcome(self, job: ClaimedJob, outcome: Outcome) -> JobState | None:
        """Write a failure, a stop or a hand-back; returns the job's new state, None when the job
        was no longer held (a stop requested meanwhile turns a retry or a hand-back into Stopped)."""
        message = outcome.message or ""
        worker_id = self.worker.id

        async def write(conn: Connection) -> JobState | None:
            if outcome.verdict is Verdict.FAILED:
                retry_in = None if outcome.final else job.retry_delay()
                return await jobs.fail(
                    conn,
                    job,
                    self._failure_message(job, message, retry_in),
                    retry_in=retry_in,
                    stopped_message=f"stopped on request; attempt {job.attempt}/{job.max_attempts} "
                    f"had failed: {message}",
                )
            if outcome.verdict is Verdict.STOPPED:
                held = await jobs.acknowledge_stop(conn, job, message)
                return JobState.STOPPED if held else None
            return (await jobs.release(conn, worker_id, [job.lease], message)).get(job.id)

        return await self.link.call(write, give_up=self._give_up)

    @staticmethod
    def _failure_message(job: ClaimedJob, message: str, retry_in: float | None) -> str:
        if retry_in is None:
            return (
                message if job.max_attempts == 1 else f"attempt {job.attempt}/{job.max_attempts}: {message}"
            )
        return f"attempt {job.attempt}/{job.max_attempts} failed: {message}; retrying in {retry_in:g}s"

    def _log_outcome(self, job: ClaimedJob, outcome: Outcome, state: JobState, elapsed: float) -> None:
        if state is JobState.STOPPED:
            logger.info("Job %s stopped after %.1fs: %s", job.id, elapsed, outcome.message)
        elif outcome.verdict is Verdict.FAILED:
            logger.warning(
                "Job %s failed after %.1fs (attempt %s/%s%s): %s",
                job.id,
                elapsed,
                job.attempt,
                job.max_attempts,
                ", will retry" if state is JobState.PENDING else "",
                outcome.message,
            )
        else:
            logger.info("Job %s handed back to Pending: %s", job.id, outcome.message)

    @staticmethod
    def _log_refused(job: ClaimedJob, what: str) -> None:
        metrics.FENCED_WRITES_REFUSED.inc()
        logger.warning(
            "Job %s: %s refused, the job is no longer held by this worker (rescued, "
            "restarted or deleted); abandoning it",
            job.id,
            what,
        )

    def _give_up(self) -> bool:
        # Past the stall timeout without the database the job is rescued elsewhere anyway.
        return self.worker.force_exit
