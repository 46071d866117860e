"""A small pool of autocommit connections that survives PostgreSQL restarts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgjobs.store import connecting


class Database:
    """Connections for handlers and loops; a broken connection is checked and replaced on checkout."""

    def __init__(self, settings: connecting.DatabaseSettings, max_size: int = 8) -> None:
        self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.conninfo(),
            kwargs={"autocommit": True, "row_factory": dict_row, "application_name": "pgjobs-operator"},
            min_size=1,
            max_size=max_size,
            # Checking on checkout costs a round trip, but after a PostgreSQL restart every
            # pooled connection is dead and handlers would otherwise fail once each.
            check=AsyncConnectionPool.check_connection,
            open=False,
        )

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self, timeout: float = 30.0) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._pool.connection(timeout=timeout) as conn:
            yield conn
