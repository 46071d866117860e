"""How a `pgjobs` command reaches PostgreSQL: settings from its options, one checked connection."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from pgjobs.store import connecting, migrating, queries


def settings(args: argparse.Namespace) -> connecting.DatabaseSettings:
    return connecting.DatabaseSettings.from_environment(
        args.database_url or None,
        session_url=args.session_database_url or None,
        prepared_statements=not args.no_prepared_statements,
    )


def run(args: argparse.Namespace, action: Callable[[queries.Connection], Awaitable[int]]) -> int:
    """Run `action` on one connection to a migrated database."""

    async def with_connection() -> int:
        conn = await connecting.connect(settings(args))
        async with conn:
            await migrating.check(conn)
            return await action(conn)

    return asyncio.run(with_connection())
