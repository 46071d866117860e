"""Connections that come back: a worker keeps working through database restarts and outages.

Each slot, the heartbeat and the listener own one `Link`. An operation that fails with a
connection error drops the connection; the next use reconnects with backoff and says why it
waits, once per outage rather than once per try.
"""

from __future__ import annotations

import asyncio
import logging
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
            except (psycopg.OperationalError, connecting.DatabaseError) as error:
                await self.drop(error)
            if give_up():
                raise GaveUp(self.name)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def try_call(self, operation: Callable[[Connection], Awaitable[Result]]) -> Result | None:
        """Run `operation` once; None (after dropping the connection) when the database is unreachable."""
        try:
            return await operation(await self.connection())
        except (psycopg.OperationalError, connecting.DatabaseError) as error:
            await self.drop(error)
            return None

    async def drop(self, error: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "%s: lost the database (%s); retrying with backoff up to %.0fs",
                self.name,
                str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__,
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

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            hotpath.release(conn)
            await conn.close()
