"""What every part of the operator shares: its settings, the database pool and the Kubernetes API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

from pgjobs.operator import kube, policy
from pgjobs.operator.database import Database
from pgjobs.operator.settings import OperatorSettings
from pgjobs.store import connecting


class NotLeading(Exception):
    """A leader's write was about to happen without a valid lease: the replica must step down."""


def stop_if_cancelled() -> None:
    """Raise CancelledError when the current task has been asked to stop.

    For loops that catch every Exception to keep going: a library that turns the cancellation
    it receives into an error of its own (seen: a status sync or maintenance step cancelled when
    the replica stepped down) would otherwise keep the task running, and whoever awaits its end
    (the step-down) waits for ever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclasses.dataclass
class Lease:
    """This replica's leadership: its term, and until when (monotonic seconds) it is sure to hold
    it. The database's lease ends later than this (it starts when the renewal reaches it)."""

    term: int
    valid_until: float


@dataclasses.dataclass
class Context:
    settings: OperatorSettings
    database_settings: connecting.DatabaseSettings
    database: Database
    kube: kube.KubeApi
    #: The status sync's own connections: under a burst, kopf runs a handler per new PgJob at
    #: once and they hold the shared pool; the sync's reads queued behind them for seconds.
    sync_database: Database
    #: Whether this replica leads right now (for logs and the handlers' curiosity only).
    leading: bool = False
    #: The lease while this replica leads; None otherwise.
    lease: Lease | None = None
    #: When this replica's current leadership began (monotonic seconds).
    leading_since: float = 0.0
    #: When the leader last looked for PgJobs without a row (monotonic seconds).
    adopted_at: float = 0.0
    #: Our own loops next to kopf (leadership and, through it, the leader's duties).
    background: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    #: What each namespace may ask for, read from settings.policy_file at start.
    policy: policy.Policy = dataclasses.field(default_factory=policy.Policy)
    #: When each of the leader's loops last went round (monotonic seconds), for /healthz.
    rounds: dict[str, float] = dataclasses.field(default_factory=dict)

    def went_round(self, duty: str) -> None:
        """A loop of the leader's went round (whether its work succeeded or will be retried)."""
        self.rounds[duty] = time.monotonic()

    def fence(self) -> None:
        """Call right before each of the leader's writes: raises NotLeading unless the lease is
        still valid by this process's clock. A leader that was frozen past its lease (and may
        have been replaced) wakes with its monotonic clock moved on, and writes nothing."""
        lease = self.lease
        if lease is None or time.monotonic() >= lease.valid_until:
            raise NotLeading("this replica's leadership lease has run out")

    async def shutdown(self) -> None:
        """Stop our loops and close the pool; idempotent.

        Called from kopf's cleanup: kopf waits (5 s) for every task created after it started
        before it returns, so ours must be gone by then for a quick exit.
        """
        tasks, self.background = self.background, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for database in (self.database, self.sync_database):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(5):
                    await database.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.kube.close()


def of(memo: Any) -> Context:
    """The Context from kopf's memo (kopf copies the memo per object; the copy shares it)."""
    context: Context = memo["context"]
    return context
