"""Named queries: `queries.sql` split on `-- name: <name>` lines into one read-only mapping, and
the two ways the store runs one (the worker's hot statement has its own lane: `hotpath.py`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

import psycopg
from psycopg import sql

_NAME_LINE = re.compile(r"^-- name: (?P<name>[a-z_]+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a named-query file into {name: statement}; duplicate names are an error."""
    pieces = _NAME_LINE.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";")
    return queries


def _load() -> Mapping[str, str]:
    text = resources.files("pgjobs.store").joinpath("queries.sql").read_text(encoding="utf-8")
    return MappingProxyType(parse(text))


#: Statement texts by name, as written (for the hot path's own lane, `hotpath.py`).
STATEMENTS = _load()
QUERIES: Mapping[str, sql.SQL] = MappingProxyType({name: sql.SQL(body) for name, body in STATEMENTS.items()})

Connection = psycopg.AsyncConnection[Any]
Row = Mapping[str, Any]


async def fetch_all(conn: Connection, query: str, params: Mapping[str, Any]) -> list[Row]:
    """Run the named query (one round trip) and return its rows."""
    cursor = await conn.execute(QUERIES[query], params)
    return await cursor.fetchall()


async def fetch_one(conn: Connection, query: str, params: Mapping[str, Any]) -> Row | None:
    """Run the named query (one round trip) and return its first row, None when there is none."""
    cursor = await conn.execute(QUERIES[query], params)
    return await cursor.fetchone()
