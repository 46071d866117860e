"""What every part of the operator shares: its settings, the database pool and the Kubernetes API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from pgjobs.operator import kube
from pgjobs.operator.database import Database
from pgjobs.operator.settings import OperatorSettings
from pgjobs.store import connecting


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
    #: When this replica's current leadership began (monotonic seconds).
    leading_since: float = 0.0
    #: When the leader last looked for PgJobs without a row (monotonic seconds).
    adopted_at: float = 0.0
    #: Our own loops next to kopf (leadership and, through it, the leader's duties).
    background: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

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
