"""Connections that come back: a worker keeps working through database restarts and outages.

Each slot, the heartbeat and the listener own one `Link`. An operation that fails with a
connection error drops the connection; the next use reconnects with backoff and says why it
waits, once per outage rather than once per try.

Outages are more than lost connections. A switchover leaves sessions on a server that turned
read-only (a demoted primary behind the same Service) or that is shutting down: their writes
fail with an SQLSTATE, not a broken connection, and only a new connection can reach the new
primary. Those errors drop the connection too. A pooler in transaction mode (PgBouncer before
1.21) hands named prepared statements between clients; the first collision switches the link
to unnamed statements with one WARNING naming the flag that avoids it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from pgjobs.store import connecting, hotpath
from pgjobs.store.queries import Connection

logger = logging.getLogger(__name__)

Result = TypeVar("Result")

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0


NO_PREPARED_STATEMENTS_WARNING = (
    "%s: the database connection is pooled in transaction mode (%s): switched to unnamed statements; "
    "start the worker with --no-prepared-statements (PGJOBS_NO_PREPARED_STATEMENTS=true) to say so"
)


_pooling_reported = threading.Event()


class GaveUp(Exception):
    """The caller's `give_up` condition came true while the database was unreachable."""


class Link:
    def __init__(self, settings: connecting.DatabaseSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._conn: Connection | None = None
        self._outage_since: float | None = None
        #: Tasks sharing a link (the heartbeat and a passed-on wake-up) connect once, not twice.
        self._connecting = asyncio.Lock()

    async def connection(self) -> Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                self._conn = await connecting.connect(self.settings)
                hotpath.keep_reader(self._conn)  # this connection serves many round trips
                if self._outage_since is not None:
                    logger.info(
                        "%s: database reachable again after %.1fs",
                        self.name,
                        time.monotonic() - self._outage_since,
                    )
                    self._outage_since = None
            return self._conn

    async def call(
        self,
        operation: Callable[[Connection], Awaitable[Result]],
        *,
        give_up: Callable[[], bool] = lambda: False,
    ) -> Result:
        """Run `operation`, reconnecting and retrying with backoff through connection failures."""
        backoff = INITIAL_BACKOFF
        while True:
            try:
                return await operation(await self.connection())
            except (psycopg.Error, connecting.DatabaseError) as error:
                if not connecting.is_outage(error):
                    raise
                await self.drop(error)
            if give_up():
                raise GaveUp(self.name)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def try_call(self, operation: Callable[[Connection], Awaitable[Result]]) -> Result | None:
        """Run `operation` once; None (after dropping the connection) when the database is unreachable."""
        try:
            return await operation(await self.connection())
        except (psycopg.Error, connecting.DatabaseError) as error:
            if not connecting.is_outage(error):
                raise
            await self.drop(error)
            return None

    async def drop(self, error: Exception) -> None:
        if isinstance(error, psycopg.Error) and error.sqlstate in connecting.POOLED_STATEMENT_STATES:
            self._use_unnamed_statements(error)
        elif self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "%s: lost the database (%s); retrying with backoff up to %.0fs",
                self.name,
                # The first line: libpq's next ones explain ("This probably means the server...").
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
                MAX_BACKOFF,
            )
        conn, self._conn = self._conn, None
        if conn is not None:
            hotpath.release(conn)
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error:
                logger.debug("%s: error while closing a broken connection", self.name, exc_info=True)

    def _use_unnamed_statements(self, error: psycopg.Error) -> None:
        if self.settings.prepared_statements:
            if not _pooling_reported.is_set():  # one line per process, not one per link
                _pooling_reported.set()
                logger.warning(NO_PREPARED_STATEMENTS_WARNING, self.name, error.sqlstate)
            self.settings = dataclasses.replace(self.settings, prepared_statements=False)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            hotpath.release(conn)
            await conn.close()
