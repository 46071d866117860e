"""Connections that come back: a worker keeps working through database restarts and outages.

Each slot, the heartbeat and the listener own one `Link`. An operation that fails with a
connection error drops the connection; the next use reconnects with backoff and says why it
waits, once per outage rather than once per try: an outage lasts until a statement goes through.

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
        #: The kinds of error (SQLSTATE or class) this outage has met, each said once.
        self._outage_kinds: set[str] = set()
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
            return self._conn

    def mark_usable(self) -> None:
        """A statement went through: the outage, if there was one, is over.

        Not a new connection: a server that refuses writes (read-only, an injected error, a
        pooler's) accepts connections all along, and its outage ends only when work gets done.
        """
        if self._outage_since is not None:
            logger.info(
                "%s: database usable again after %.1fs", self.name, time.monotonic() - self._outage_since
            )
            self._outage_since = None

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
                result = await operation(await self.connection())
            except (psycopg.Error, connecting.DatabaseError) as error:
                if not connecting.is_outage(error):
                    raise
                await self.drop(error)
            else:
                self.mark_usable()
                return result
            if give_up():
                raise GaveUp(self.name)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def try_call(self, operation: Callable[[Connection], Awaitable[Result]]) -> Result | None:
        """Run `operation` once; None (after dropping the connection) when the database is unreachable."""
        try:
            result = await operation(await self.connection())
        except (psycopg.Error, connecting.DatabaseError) as error:
            if not connecting.is_outage(error):
                raise
            await self.drop(error)
            return None
        self.mark_usable()
        return result

    async def drop(self, error: Exception) -> None:
        if isinstance(error, psycopg.Error) and error.sqlstate in connecting.POOLED_STATEMENT_STATES:
            self._use_unnamed_statements(error)
        else:
            self._say_outage(error)
        conn, self._conn = self._conn, None
        if conn is not None:
            hotpath.release(conn)
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error:
                logger.debug("%s: error while closing a broken connection", self.name, exc_info=True)

    def _say_outage(self, error: Exception) -> None:
        """One WARNING when an outage begins, and one for each other kind of error it goes
        through (a cut session, then a read-only server): what the link waits for, not each try."""
        kind = getattr(error, "sqlstate", None) or type(error).__name__
        if self._outage_since is None:
            self._outage_since, self._outage_kinds = time.monotonic(), {kind}
            logger.warning(
                "%s: lost the database (%s); retrying with backoff up to %.0fs",
                self.name,
                connecting.summary(error),
                MAX_BACKOFF,
            )
        elif kind not in self._outage_kinds:
            self._outage_kinds.add(kind)
            logger.warning("%s: the database is still unusable (%s)", self.name, connecting.summary(error))

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
