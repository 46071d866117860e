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

A statement that loses a conflict with another transaction (a deadlock, a serialization
failure) is no outage: nothing of it happened, and it runs again at once on the same connection.
Busy slots meet this on their own: a claim's `FOR UPDATE SKIP LOCKED` still waits when the row
it locks was claimed by a transaction that has just committed and is being completed by another
(PostgreSQL then locks the row's newer versions, and that wait does not skip: the server log says
"while locking updated version"), so two slots that claim and complete jobs of a millisecond can
each wait for the other. PostgreSQL breaks the cycle after `deadlock_timeout` by rolling one
statement back. Only a conflict that keeps coming back (`CONFLICT_RETRIES`) counts as an outage.
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
from psycopg import pq

from pgjobs.store import connecting, hotpath
from pgjobs.store.queries import Connection
from pgjobs.worker import metrics

logger = logging.getLogger(__name__)

Result = TypeVar("Result")

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0
#: Immediate re-runs of an operation that lost a conflict, before it counts as an outage.
CONFLICT_RETRIES = 3


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
                result = await self._run(operation)
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
        """Run `operation` once (again at once after a lost conflict); None (after dropping the
        connection) when the database is unreachable."""
        try:
            result = await self._run(operation)
        except (psycopg.Error, connecting.DatabaseError) as error:
            if not connecting.is_outage(error):
                raise
            await self.drop(error)
            return None
        self.mark_usable()
        return result

    async def _run(self, operation: Callable[[Connection], Awaitable[Result]]) -> Result:
        """Run `operation`, again at once on the same connection when it lost a conflict with
        another transaction (up to `CONFLICT_RETRIES` times)."""
        retries = 0
        while True:
            conn = await self.connection()
            try:
                return await operation(conn)
            except psycopg.Error as error:
                if retries == CONFLICT_RETRIES or not _lost_conflict(error, conn):
                    raise
                retries += 1
                metrics.CONFLICTS_RETRIED.inc()
                logger.debug("%s: %s; running it again", self.name, connecting.summary(error))

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


def _lost_conflict(error: psycopg.Error, conn: Connection) -> bool:
    """A deadlock or serialization failure that left the connection idle (rolled back) and usable."""
    return (
        error.sqlstate in connecting.CONFLICT_STATES
        and not conn.closed
        and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    )
