"""The worker process: registers a fresh identity, runs its slots, heartbeats, listens, rescues.

Shutdown on SIGTERM/SIGINT: stop claiming, let running jobs finish within the shutdown grace,
then hand them back to Pending (or Stopped with `--on-shutdown stop`). A second signal skips
the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterable

import psycopg

from pgjobs.store import connecting, hotpath, jobs, migrating, workers
from pgjobs.store.queries import Connection
from pgjobs.store.records import Heartbeat
from pgjobs.tasks import registry
from pgjobs.worker import capture, health, metrics
from pgjobs.worker.execution import StopReason, Verdict
from pgjobs.worker.links import Link
from pgjobs.worker.settings import WorkerSettings
from pgjobs.worker.slots import Slot

logger = logging.getLogger("pgjobs.worker")


class Worker:
    def __init__(
        self, database: connecting.DatabaseSettings, settings: WorkerSettings, *, listen: bool = True
    ) -> None:
        self.database = database
        self.settings = settings
        self.listen = listen
        #: Fresh per process start: pod names get reused, identities must not.
        self.id = uuid.uuid4()
        self.stopping = False
        self.force_exit = False
        #: Why the worker ended on its own (a background loop died); None for a normal end.
        self.failure: str | None = None
        self.slots = [Slot(self, database, index) for index in range(settings.concurrency)]
        self._control = Link(database, "heartbeat")
        self._beat_now = asyncio.Event()
        self._shutdown_timer: asyncio.TimerHandle | None = None
        self._health_server: asyncio.Server | None = None
        self._last_heartbeat = time.monotonic()
        #: When the heartbeat loop last finished a turn, answered or not (for /healthz).
        self._heartbeat_turned = time.monotonic()
        #: Start of the current unbroken run of heartbeats (reset by every failed one).
        self._in_contact_since = time.monotonic()
        #: Fires a stall timeout after the last answered heartbeat, however the heartbeat loop
        #: is doing (a statement can hang for many minutes on a connection whose packets vanish).
        self._watchdog: asyncio.TimerHandle | None = None
        #: Leases this worker held without any slot running them at the last heartbeat, with the
        #: slots that were exchanging with the database then (and how many exchanges they had
        #: finished): one of those may have been about to learn of the job.
        self._suspects: dict[int, list[tuple[Slot, int]]] = {}
        self._wake_channel = workers.wake_channel(self.id)
        self._name = str(self.id)
        self._passing_on: set[asyncio.Task[None]] = set()
        #: Wakes a slot when a rate-limited queue the worker serves has a start again (one timer
        #: for the worker, the earliest asked for: a slot that finds work passes the wake-up on).
        self._throttle_timer: asyncio.TimerHandle | None = None
        #: Whether the worker's row counts its idle slots for targeted wake-ups: only a worker
        #: that listens can be woken, and a burst worker's slots leave once the queue is empty.
        self.counts_idle = listen and not settings.burst
        #: Whether the listener's LISTEN is in place now (a wake-up sent meanwhile is lost).
        self._listening = False
        #: The tasks this worker runs, recorded in its row: it claims only jobs of these, so a job
        #: of a task it lacks or refuses (an unsafe one without --enable-shell) waits for a worker
        #: that runs it (a mixed fleet, a rollout) instead of failing here.
        #: None claims any task, as workers of code from before task filtering do.
        self.tasks: tuple[str, ...] | None = tuple(runnable_tasks(settings.enable_shell))

    def keeps(self, claimed_at: float) -> bool:
        """Whether a job this worker claimed at `claimed_at` (monotonic) cannot have been rescued:
        the last heartbeat is recent enough, or the claim is (the sweep spares a job whose
        start is less than a stall timeout old). The claim's answer arrives a little after the
        database stamped the start, hence a margin of two heartbeat intervals."""
        return time.monotonic() < self._keep_until(claimed_at)

    def _keep_until(self, claimed_at: float) -> float:
        settings = self.settings
        fresh_claim = claimed_at + settings.stall_timeout - 2 * settings.heartbeat_interval
        return max(self._last_heartbeat + settings.stall_timeout, fresh_claim)

    async def run(self) -> None:
        await self._start()
        background = [asyncio.create_task(self._heartbeat_loop(), name="heartbeat")]
        if self.listen:
            background.append(asyncio.create_task(self._listen_loop(), name="listen"))
        for task in background:
            task.add_done_callback(self._supervise)
        slots_done = False
        try:
            await asyncio.gather(*(slot.run() for slot in self.slots))
            slots_done = True
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._finish(hand_back_leftovers=slots_done)

    async def _start(self) -> None:
        conn = await self._wait_for_database()
        await self._register(conn)
        metrics.SLOTS.set(self.settings.concurrency)
        metrics.declare_job_series([verdict.value for verdict in Verdict])
        # Counted when scraped rather than updated twice per job.
        metrics.BUSY_SLOTS.set_function(lambda: sum(slot.execution is not None for slot in self.slots))
        if self.settings.metrics_port is not None:
            metrics.serve(self.settings.metrics_port)
        if self.settings.health_port is not None:
            self._health_server = await health.serve(
                self.settings.health_port,
                self.not_ready_reason,
                self.settings.health_address,
                alive=self.not_alive_reason,
            )
        logger.info(
            "pgjobs worker %s on %s (pid %s): queues %s, %s slot(s), tasks: %s",
            self.id,
            self.settings.hostname,
            os.getpid(),
            ", ".join(self.settings.queues),
            self.settings.concurrency,
            "any" if self.tasks is None else ", ".join(self.tasks) or "none",
        )
        logger.info(
            "This worker runs %s job(s) at a time. To scale, run more workers.", self.settings.concurrency
        )

    def not_ready_reason(self) -> str | None:
        """Why the worker should get no new work from a rollout's point of view, or None."""
        if self.stopping:
            return "shutting down"
        silent = time.monotonic() - self._last_heartbeat
        if silent > self.settings.stall_timeout:
            return f"no heartbeat reached PostgreSQL for {silent:.0f}s"
        return None

    def not_alive_reason(self) -> str | None:
        """Why the kubelet should restart this worker, or None: its heartbeat loop stopped turning.
        A turn takes at most the stall timeout and a connection's set-up (see `_beat`), outage
        or not, so a loop quiet for longer than that and two intervals is stuck."""
        limit = (
            self.settings.stall_timeout + connecting.CONNECT_TIMEOUT + 2 * self.settings.heartbeat_interval
        )
        quiet = time.monotonic() - self._heartbeat_turned
        if quiet > limit:
            return f"the heartbeat loop has not turned for {quiet:.0f}s (limit {limit:.0f}s)"
        return None

    async def _register(self, conn: Connection) -> None:
        settings = self.settings
        await workers.register(
            conn,
            self.id,
            settings.hostname,
            os.getpid(),
            settings.queues,
            settings.concurrency,
            settings.heartbeat_interval,
            settings.stall_timeout,
            tasks=self.tasks,
        )

    async def _wait_for_database(self) -> Connection:
        """At start, wait for a server that is still coming up or a schema not yet migrated
        (in Kubernetes, workers often start before both); give up on what waiting cannot fix."""
        backoff, last_reason = 0.5, ""
        while True:
            try:
                conn = await self._control.connection()
                await migrating.check(conn)
                return conn
            except connecting.DatabaseError as error:
                if not error.retryable or self.stopping:
                    raise
                if str(error) != last_reason:
                    logger.warning("Waiting for the database: %s", error)
                    last_reason = str(error)
                await self._control.drop(error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _finish(self, *, hand_back_leftovers: bool) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._health_server is not None:
            self._health_server.close()
        if hand_back_leftovers:
            # Every slot has returned, so a job still held is run by nobody (a claim whose answer
            # was lost while stopping, an outcome given up): back to Pending now, attempt
            # refunded, rather than rescued a stall timeout later with the attempt charged.
            await self._control.try_call(self._hand_back_all)
        if self._passing_on:
            await asyncio.gather(*self._passing_on, return_exceptions=True)
        await self._control.try_call(lambda conn: workers.deregister(conn, self.id))
        for link in [self._control, *(slot.link for slot in self.slots)]:
            with contextlib.suppress(psycopg.Error):
                await link.close()
        logger.info("Worker %s stopped", self.id)

    # Shutdown

    def _supervise(self, task: asyncio.Task[None]) -> None:
        """A heartbeat or listener that dies leaves a worker that looks alive and is not: its
        jobs go stale and come back to it. End the worker instead, with one line saying why;
        it exits non-zero, so its pod restarts, and its jobs are handed back now."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self.failure = f"the {task.get_name()} loop stopped: {type(error).__name__}: {error}"
        logger.error("%s; handing running jobs back and exiting so that the worker restarts", self.failure)
        if not self.stopping:
            self.begin_shutdown()
        self._end_running(StopReason.SHUTDOWN)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.begin_shutdown, signum)

    def begin_shutdown(self, signum: int | None = None) -> None:
        name = signal.Signals(signum).name if signum else "request"
        if self.stopping:
            logger.warning("%s again: handing running jobs back now", name)
            self._end_running(StopReason.SHUTDOWN)
            self.force_exit = True
            return
        self.stopping = True
        running = [slot for slot in self.slots if slot.execution]
        logger.info(
            "%s: shutting down; no new jobs; waiting up to %.0fs for %s running job(s)",
            name,
            self.settings.shutdown_grace,
            len(running),
        )
        for slot in self.slots:
            slot.wake()
        if self._throttle_timer is not None:
            self._throttle_timer.cancel()
        self._beat_now.set()  # the row stops counting idle slots: no wake-up should come here
        loop = asyncio.get_running_loop()
        self._shutdown_timer = loop.call_later(self.settings.shutdown_grace, self._grace_over)

    def _grace_over(self) -> None:
        self._end_running(StopReason.SHUTDOWN)

    def _end_running(self, reason: StopReason) -> None:
        for slot in self.slots:
            if slot.execution:
                slot.execution.request_stop(reason)

    # Heartbeats (and the rescue sweep, which any worker may run)

    async def _heartbeat_loop(self) -> None:
        self._arm_watchdog()
        while True:
            sent_at = self._heartbeat_turned = time.monotonic()
            beat = await self._beat()
            if beat is None:
                metrics.HEARTBEAT_FAILURES.inc()
                self._check_silence(time.monotonic() - self._last_heartbeat)
                self._in_contact_since = time.monotonic()
            else:
                self._last_heartbeat = sent_at
                self._arm_watchdog()
                await self._answer(beat, sent_at)
                # Every heartbeat, so a dead worker's job is running again within the stall
                # timeout plus about one heartbeat (the sweep is one cheap indexed UPDATE).
                if self._may_rescue():
                    await self._rescue()
            self._beat_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.heartbeat_interval):
                    await self._beat_now.wait()

    async def _beat(self) -> Heartbeat | None:
        """One heartbeat, None when it failed. It may take until the stall deadline (at least an
        interval), plus a connection's set-up; a connection that hangs is then dropped, so the
        next one starts afresh. (Letting jobs go at the deadline is the watchdog's part.)"""
        deadline = self._last_heartbeat + self.settings.stall_timeout
        timeout = max(deadline - time.monotonic(), self.settings.heartbeat_interval)
        timeout += connecting.CONNECT_TIMEOUT
        try:
            # asyncio.timeout, not wait_for: on 3.11, wait_for swallows a cancellation that comes
            # as its inner call finishes, and the heartbeat loop then outlived the worker's end.
            async with asyncio.timeout(timeout):
                idle = self.idle_slots()
                return await self._control.try_call(lambda conn: workers.heartbeat(conn, self.id, idle))
        except TimeoutError:
            await self._control.drop(TimeoutError(f"a heartbeat got no answer within {timeout:.1f}s"))
            return None

    def idle_slots(self) -> int | None:
        """How many slots the worker's row should count idle: none while it is shutting down or
        its listener is not listening (a wake-up would be lost); None (leave the row as it is)
        while a slot's claim or outcome is on its way (its answer may change the count), and
        for a worker whose idle slots are never counted."""
        if not self.counts_idle:
            return None
        if self.stopping or not self._listening:
            return 0
        if any(slot.exchanging for slot in self.slots):
            return None
        return sum(slot.counted_idle for slot in self.slots)

    def _arm_watchdog(self) -> None:
        """Fire when the next job may become rescuable: the stall deadline, or while silent the
        time a job claimed during the silence stops being fresh (then every interval)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        now = time.monotonic()
        deadlines = [self._last_heartbeat + self.settings.stall_timeout]
        deadlines += [self._keep_until(slot.claimed_at) for slot in self.slots if slot.execution]
        upcoming = [deadline - now for deadline in deadlines if deadline > now]
        delay = min(upcoming, default=self.settings.heartbeat_interval)
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._on_watchdog)

    def _on_watchdog(self) -> None:
        self._check_silence(time.monotonic() - self._last_heartbeat)  # may fire a hair early
        self._arm_watchdog()

    def _check_silence(self, silent_for: float) -> None:
        """A worker that cannot heartbeat past the stall timeout lets its jobs go: they are rescued
        (a job claimed during the silence only once it is no longer fresh: see `keeps`)."""
        if silent_for < self.settings.stall_timeout:
            return
        for slot in self.slots:
            if slot.execution and not self.keeps(slot.claimed_at):
                logger.warning(
                    "Job %s: no heartbeat for %.0fs, so it will be rescued elsewhere; letting it go",
                    slot.execution.job.id,
                    silent_for,
                )
                slot.execution.request_stop(StopReason.SILENT)

    async def _answer(self, beat: Heartbeat, sent_at: float) -> None:
        if not beat.known:
            logger.warning("This worker's registration was removed; registering again")
            await self._control.try_call(self._register)
        elif beat.was_presumed_dead:
            logger.warning(
                "This worker had been presumed dead (no heartbeat within %.0fs); its jobs were rescued",
                self.settings.stall_timeout,
            )
        for slot in self.slots:
            execution = slot.execution
            if execution is None or slot.claimed_at >= sent_at:
                continue
            if execution.job.lease not in beat.held_leases:
                execution.request_stop(StopReason.LOST)
            elif execution.job.id in beat.stop_requested:
                execution.request_stop(StopReason.REQUESTED)
        orphans = self._orphans(beat.held_leases)
        if orphans:
            await self._hand_back(orphans)

    def _orphans(self, held: frozenset[int]) -> list[int]:
        """Leases held without a slot running them at this heartbeat and the one before, which no
        exchange under way at the one before can explain: a claim that committed but whose
        answer was lost with its connection (the slot claimed again), or an outcome a slot gave
        up writing. Nobody else would ever let them go: this worker is alive, so no rescue."""
        running = {slot.execution.job.lease for slot in self.slots if slot.execution is not None}
        unexplained = held - running
        orphans = [
            lease
            for lease in unexplained
            if lease in self._suspects
            and all(slot.exchanges > finished for slot, finished in self._suspects[lease])
        ]
        exchanging = [(slot, slot.exchanges) for slot in self.slots if slot.exchanging]
        self._suspects = {
            lease: self._suspects.get(lease, exchanging) for lease in unexplained if lease not in orphans
        }
        return orphans

    async def _hand_back_all(self, conn: Connection) -> None:
        await self._release_orphans(conn, None, "handed back by its worker on leaving")

    async def _hand_back(self, leases: list[int]) -> None:
        message = "handed back: its worker holds it but lost track of it (a claim's answer was lost)"
        await self._control.try_call(lambda conn: self._release_orphans(conn, leases, message))

    async def _release_orphans(self, conn: Connection, leases: Iterable[int] | None, message: str) -> None:
        for job_id, state in (await jobs.release(conn, self.id, leases, message)).items():
            metrics.ORPHANS_HANDED_BACK.inc()
            logger.warning(
                "Job %s was held by this worker but run by none of its slots: now %s", job_id, state.phase
            )

    def _may_rescue(self) -> bool:
        """Sweep only after a full stall timeout in contact: after an outage, other workers need
        that long to reconnect and heartbeat, and sweeping sooner would take their jobs away."""
        return time.monotonic() - self._in_contact_since >= self.settings.stall_timeout

    async def _rescue(self) -> None:
        async def sweep(conn: Connection) -> int:
            rescued = await jobs.rescue(conn, self.settings.stall_timeout)
            for job in rescued:
                logger.warning(
                    "Rescued job %s from a silent worker: now %s (attempt %s/%s)",
                    job.id,
                    job.state.phase,
                    job.attempt,
                    job.max_attempts,
                )
            return len(rescued)

        count = await self._control.try_call(sweep)
        if count:
            metrics.RESCUED.inc(count)

    # Wake-ups

    async def _listen_loop(self) -> None:
        """LISTEN for new jobs and stop requests; polling covers what a reconnect loses."""
        link = Link(self.database.for_session(), "listener")
        try:
            while True:
                await link.call(lambda conn: self._listen(conn, link))
        finally:
            with contextlib.suppress(psycopg.Error):
                await link.close()

    async def _listen(self, conn: Connection, link: Link) -> None:
        await workers.listen(conn, self.id)
        link.mark_usable()
        self._listening = True
        try:
            self.wake_one_slot()  # anything announced while we were not listening
            await hotpath.receive_notifications(conn, self._notified)
        finally:
            self._listening = False
            self._beat_now.set()  # the row stops counting idle slots until we listen again

    def _notified(self, channel: str, payload: str) -> None:
        if channel == workers.JOBS_CHANNEL:
            self.wake_one_slot()
        elif channel == self._wake_channel:
            if not self.wake_one_slot(waiting_only=True):
                # Chosen for a new job with no slot waiting (the row's idle count was behind,
                # or a slot claiming now may come back with another job): every other worker
                # must hear of it instead.
                self._pass_on()
        elif payload == self._name:
            self._beat_now.set()

    def _pass_on(self) -> None:
        metrics.WAKEUPS_PASSED_ON.inc()
        task = asyncio.get_running_loop().create_task(self._control.try_call(jobs.announce))
        self._passing_on.add(task)
        task.add_done_callback(self._passing_on.discard)

    def wake_one_slot(self, besides: Slot | None = None, *, waiting_only: bool = False) -> bool:
        """Wake one slot free to claim: an idle one first, else (unless `waiting_only`) one
        claiming now (it claims again, as its claim may have missed the new job); False when
        none was woken, or the worker is shutting down (no slot claims any more). Waking every
        idle slot per notification made all but one claim nothing; a slot that finds work wakes
        the next (`Slot.run`), and every idle slot still polls."""
        if self.stopping:
            return False
        free = [slot for slot in self.slots if slot.execution is None and slot is not besides]
        for slot in sorted(free, key=lambda slot: not slot.idle):
            if not slot.wake_pending and (slot.idle or not waiting_only):
                slot.wake()
                return True
        return False

    def wake_later(self, delay: float) -> None:
        """Wake one waiting slot in `delay` seconds (a throttled queue's next start), unless a
        wake-up is already due sooner."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(delay, 0.0)
        timer = self._throttle_timer
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return  # due sooner (or due now, its callback not run yet)
        if timer is not None:
            timer.cancel()
        self._throttle_timer = loop.call_at(when, self._throttle_over)

    def _throttle_over(self) -> None:
        self._throttle_timer = None
        self.wake_one_slot(waiting_only=True)


def runnable_tasks(enable_shell: bool) -> list[str]:
    """The registered tasks this worker runs: the unsafe ones only when they are enabled."""
    found = (registry.get(name) for name in registry.names())
    return [task.name for task in found if task is not None and (enable_shell or not task.unsafe)]


async def run_worker(
    database: connecting.DatabaseSettings, settings: WorkerSettings, *, listen: bool = True
) -> int:
    """Run a worker until it is told to stop; its exit code (1 when a background loop died)."""
    capture.install(capture.Redactor(capture.secrets_of(database, os.environ)))
    if settings.log_format == "json":
        capture.use_json_format()
    worker = Worker(database, settings, listen=listen)
    worker.install_signal_handlers()
    try:
        await worker.run()
    except (psycopg.Error, connecting.DatabaseError) as error:
        if worker.failure is None:
            raise
        # The loop that died said why in its one ERROR line; meeting the same error again on the
        # way out (a slot's claim, handing jobs back) is no news, and the exit code says it all.
        logger.debug("stopping after %s: %s", worker.failure, error)
    return 1 if worker.failure else 0
