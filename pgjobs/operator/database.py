"""A small pool of autocommit connections that survives PostgreSQL restarts."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgjobs.store import connecting

#: A connection returned to the pool this recently is handed out again without a check.
TRUSTED_FOR = 1.0


class Database:
    """Connections for handlers and loops; an idle connection is checked and replaced on checkout."""

    def __init__(self, settings: connecting.DatabaseSettings, max_size: int = 8) -> None:
        #: When each pooled connection was last returned in a good state (monotonic seconds).
        self._returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.conninfo(),
            kwargs={"autocommit": True, "row_factory": dict_row, "application_name": "pgjobs-operator"},
            min_size=1,
            max_size=max_size,
            check=self._check,
            reset=self._stamp,
            open=False,
        )
        #: A check of every idle connection under way (`_check_all`).
        self._checking: asyncio.Task[None] | None = None

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A round trip, unless the connection was in good use a moment ago.

        After a PostgreSQL restart every pooled connection is dead, and handlers would fail
        once each without a check; but checking every checkout cost a round trip per handler
        (~5% of the operator's CPU under a burst), when connections that just served a query
        are almost certainly fine. One that is not fails its handler, which kopf retries.
        """
        if time.monotonic() - self._returned.get(conn, -TRUSTED_FOR) < TRUSTED_FOR:
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            self._check_all()
            raise

    def _check_all(self) -> None:
        """Check every idle connection now, replacing the broken ones.

        One broken idle connection means the server restarted or failed over, and every
        connection idle since then is broken too. The pool hands them out one at a time, and the
        client waiting for a connection pauses after each broken one with growing back-off
        (1, 2, 4, 8 s ...): after a failover, five stale connections in the pool stalled the
        leader's orphan clean-up, and so the status sync behind it, for the whole 30 s timeout.
        """
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._pool.check(), name="pgjobs-pool-check")

    async def _stamp(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._returned[conn] = time.monotonic()

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self, timeout: float = 30.0) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._pool.connection(timeout=timeout) as conn:
            yield conn
