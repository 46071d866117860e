"""What every part of the operator shares: its options, the database pool and the Kubernetes API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
from typing import Any

from pgjobs.cli import options as cli_options
from pgjobs.operator import kube
from pgjobs.operator.database import Database
from pgjobs.store import connecting


@dataclasses.dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    stall_timeout: float = 15.0
    status_writes_per_second: float = 50.0
    #: Writes allowed at once above the rate (a token bucket's size, as client-go's QPS/Burst).
    status_write_burst: int = 500
    sync_interval: float = 0.2
    maintenance_interval: float = 5.0
    liveness_port: int = 8080
    metrics_port: int = 9090
    kubeconfig: str | None = None
    #: How long deleting a PgJob waits for the worker to stop its running job.
    delete_wait: float = 10.0
    #: Dead or stopped workers are forgotten this long after their last heartbeat.
    worker_retention: float = 3600.0
    #: Followers try to take the leadership this often; the leader checks its lock as often.
    leadership_interval: float = 1.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OperatorOptions:
        return cls(
            namespaces=tuple(cli_options.resolved_list(args, "--namespace")),
            stall_timeout=float(args.stall_timeout),
            status_writes_per_second=float(args.status_writes_per_second),
            status_write_burst=int(args.status_write_burst),
            sync_interval=float(args.sync_interval),
            maintenance_interval=float(args.maintenance_interval),
            liveness_port=int(args.liveness_port),
            metrics_port=int(args.metrics_port),
            kubeconfig=args.kubeconfig or None,
        )

    def watches(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces


@dataclasses.dataclass
class Context:
    options: OperatorOptions
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
