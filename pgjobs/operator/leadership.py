"""Leadership among operator replicas: a PostgreSQL session advisory lock on a dedicated connection.

The lock lives as long as the session: when the leader dies, PostgreSQL ends its session and
frees the lock, and a follower (trying every second) takes over within about a second. The
leader checks its session every round; when the check fails it cancels its duties at once,
because the lock may already belong to another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg

from pgjobs.operator import context, metrics
from pgjobs.store import connecting, resources

logger = logging.getLogger(__name__)

#: The advisory lock key: "pgjobs:L" in ASCII, recognisable in pg_locks. It must differ from the
#: migration lock's ("pgjobs"): with the same key, an operator pod's migrate init container
#: waited for ever behind the leading replica (seen on the first real two-replica install).
LOCK_KEY = int.from_bytes(b"pgjobs:L", "big")
#: A leader whose session check takes longer than this steps down.
PING_TIMEOUT = 5.0

Duties = Callable[[], Coroutine[Any, Any, None]]


async def run(ctx: context.Context, duties: Duties) -> None:
    """Follow, lead while holding the lock, step down when it is lost; until cancelled."""
    while True:
        try:
            conn = await connecting.connect(ctx.database_settings.for_session())
        except connecting.DatabaseError as error:
            logger.warning("leadership: %s", error)
            await asyncio.sleep(ctx.settings.leadership_interval)
            continue
        try:
            await _follow_then_lead(ctx, conn, duties)
        except (psycopg.Error, TimeoutError) as error:
            logger.warning("leadership: lost the database session: %s", error)
        except Exception:  # a bug in the duties: log it, step down, and try again
            logger.exception("leadership: the leader's duties failed")
        finally:
            _set_leading(ctx, False)
            with contextlib.suppress(Exception):
                await conn.close()
        await asyncio.sleep(ctx.settings.leadership_interval)


async def _follow_then_lead(ctx: context.Context, conn: psycopg.AsyncConnection[Any], duties: Duties) -> None:
    while not await resources.try_lock(conn, LOCK_KEY):
        await asyncio.sleep(ctx.settings.leadership_interval)
    _set_leading(ctx, True)
    task = asyncio.create_task(duties(), name="pgjobs-leader-duties")
    try:
        while not task.done():
            await asyncio.sleep(ctx.settings.leadership_interval)
            async with asyncio.timeout(PING_TIMEOUT):
                await resources.ping(conn)
        task.result()  # duties never return on their own: surface why they did
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _set_leading(ctx: context.Context, leading: bool) -> None:
    if ctx.leading != leading:
        logger.info(
            "this replica %s", "now leads: status sync and maintenance" if leading else "stops leading"
        )
    if leading and not ctx.leading:
        ctx.leading_since = time.monotonic()
    ctx.leading = leading
    metrics.LEADER.set(1 if leading else 0)
    if not leading:
        metrics.forget_leader_gauges()
