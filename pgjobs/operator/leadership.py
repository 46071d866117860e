"""Leadership among operator replicas: a lease with a term in PostgreSQL, on a session of its own.

The leader renews its lease every `leadership_interval`; followers try to take it as often
(pgjobs.store.leases, migration 0005). A leader that dies loses its session, and a follower
takes over at its next try. A leader that stops responding but keeps its session (paused,
starved of CPU, a hung node) keeps nothing: once its lease has run out, a follower takes it with
the next term. Whatever the old leader does when it wakes is fenced: before each write it checks
its lease by its own monotonic clock (`Context.fence`), and its next renewal, naming the old
term, fails, so it steps down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg

from pgjobs.operator import context, metrics
from pgjobs.store import connecting, leases

logger = logging.getLogger(__name__)

Duties = Callable[[], Coroutine[Any, Any, None]]

#: How long stepping down waits for the duties to end.
STOP_TIMEOUT = 10.0


async def run(ctx: context.Context, duties: Duties) -> None:
    """Follow, lead while holding the lease, step down when it is lost; until cancelled."""
    while True:
        try:
            conn = await connecting.connect(ctx.database_settings.for_session())
        except connecting.DatabaseError as error:
            logger.warning("leadership: %s", error)
            await asyncio.sleep(ctx.settings.leadership_interval)
            continue
        try:
            await _follow_then_lead(ctx, conn, duties)
        except context.NotLeading as error:
            logger.warning("leadership: %s; stepping down", error)
        except (psycopg.Error, TimeoutError) as error:
            logger.warning("leadership: lost the database session: %s", error)
        except Exception:  # a bug in the duties: log it, step down, and try again
            logger.exception("leadership: the leader's duties failed")
        finally:
            _set_leading(ctx, None)
            with contextlib.suppress(Exception):
                await conn.close()
        await asyncio.sleep(ctx.settings.leadership_interval)


def holder_name() -> str:
    """Who leads, as the lease shows it (the pod's name in Kubernetes)."""
    return f"{socket.gethostname()} pid {os.getpid()}"


async def _follow_then_lead(ctx: context.Context, conn: psycopg.AsyncConnection[Any], duties: Duties) -> None:
    settings = ctx.settings
    locked = False
    while True:
        locked = locked or await leases.try_lock(conn)
        started = time.monotonic()
        term = await leases.acquire(conn, holder_name(), settings.leader_lease)
        if term is not None:
            break
        await asyncio.sleep(settings.leadership_interval)
    _set_leading(ctx, context.Lease(term, started + settings.leader_lease))
    task = asyncio.create_task(duties(), name="pgjobs-leader-duties")
    try:
        while not task.done():
            await asyncio.sleep(settings.leadership_interval)
            # Hold the lock as well once its holder is gone, so that no replica of code from
            # before the lease can lead next to this one during a rolling update.
            locked = locked or await leases.try_lock(conn)
            await _renew(ctx, conn, term)
        _surface(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await leases.release(conn, term)  # the operator stops: hand over at once
        raise
    finally:
        await _stop(task)


async def _stop(duties: asyncio.Task[None]) -> None:
    """Cancel the duties and wait, for a bounded time, for them to end: a replica that stepped
    down must be able to follow again (its writes are fenced meanwhile either way)."""
    duties.cancel()
    done, _ = await asyncio.wait({duties}, timeout=STOP_TIMEOUT)
    if not done:
        logger.error("leadership: the leader's duties did not stop within %ss", STOP_TIMEOUT)
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        duties.result()


def _surface(task: asyncio.Task[None]) -> None:
    """Duties never return on their own: raise why they ended (NotLeading from a fenced write,
    however deep in their task groups, as itself)."""
    try:
        task.result()
    except BaseExceptionGroup as group:
        if group.subgroup(context.NotLeading) is not None:
            raise context.NotLeading("a write found the lease run out") from group
        raise


async def _renew(ctx: context.Context, conn: psycopg.AsyncConnection[Any], term: int) -> None:
    """Extend the lease, or raise NotLeading; a renewal may take at most what is left of it."""
    lease = ctx.lease
    assert lease is not None
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(lease.valid_until - started, 0.001)):
            renewed = await leases.renew(conn, term, ctx.settings.leader_lease)
    except TimeoutError:
        raise context.NotLeading(f"could not renew the lease of term {term} before it ran out") from None
    if not renewed:
        raise context.NotLeading(f"another replica took the lease (this one led term {term})")
    lease.valid_until = started + ctx.settings.leader_lease


def _set_leading(ctx: context.Context, lease: context.Lease | None) -> None:
    leading = lease is not None
    if ctx.leading != leading:
        if lease is not None:
            logger.info("this replica now leads (term %d): status sync and maintenance", lease.term)
        else:
            logger.info("this replica stops leading")
    if leading and not ctx.leading:
        ctx.leading_since = time.monotonic()
    ctx.leading = leading
    ctx.lease = lease
    metrics.LEADER.set(1 if leading else 0)
    if not leading:
        metrics.forget_leader_gauges()
