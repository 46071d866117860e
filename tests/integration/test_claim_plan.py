"""The claim's plan in every statistics state the jobs table can be in: an index scan of the
pending index that stops at the first row, never a scan and sort of every pending row.

Statistics lag behind the table: a fresh install has none, a queue that sat empty was analyzed
empty, a table analyzed small grows by a burst before autovacuum's next ANALYZE, and a drained
batch leaves dead entries behind. Each case builds one of those states (bench/coldburst.py,
which times the same states; autovacuum off for the table, so that it cannot analyze halfway)
and asks PostgreSQL for the plan of the exact hot statement, both as a custom plan (the
parameters known, as with no prepared statements) and as the generic plan a prepared statement
settles on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bench import coldburst
from pgjobs.store import connecting, hotpath
from pgjobs.store.queries import STATEMENTS

pytestmark = pytest.mark.integration

CLAIM = STATEMENTS["job_complete_and_claim"]
PENDING_INDEX = "jobs_pending_idx"
#: 200,000 rows where the table grew: the plans are the same at 1M (bench/coldburst.py shows it).
STATES = coldburst.states(burst=20_000, grown=200_000)
Conn = psycopg.Connection[Any]


@pytest.fixture
def conn(database: connecting.DatabaseSettings) -> Iterator[Conn]:
    with psycopg.connect(database.conninfo(), autocommit=True) as conn:
        coldburst.without_autovacuum(conn)
        yield conn


def custom_plan(conn: Conn, queues: tuple[str, ...]) -> dict[str, Any]:
    row = conn.execute("EXPLAIN (FORMAT JSON) " + CLAIM, coldburst.claim_parameters(queues)).fetchone()
    assert row is not None
    return dict(row[0][0]["Plan"])


def generic_plan(conn: Conn, queues: tuple[str, ...]) -> dict[str, Any]:
    """The plan of the statement prepared as the hot path prepares it, once PostgreSQL stops
    planning it per execution."""
    text, names = hotpath.to_positional(CLAIM)
    types = [
        conn.execute("SELECT format_type(%s, NULL)", [hotpath.PARAMETER_TYPES[name]]).fetchone()[0]  # type: ignore[index]
        for name in names
    ]
    conn.execute(f"PREPARE claim_plan ({', '.join(types)}) AS {text}")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    values = coldburst.claim_parameters(queues)
    # EXECUTE takes its arguments as literals (a utility statement has no bound parameters).
    arguments = sql.SQL(", ").join(sql.Literal(values[name]) for name in names)
    row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE claim_plan ({})").format(arguments)).fetchone()
    assert row is not None
    return dict(row[0][0]["Plan"])


def assert_claim_stops_at_the_first_row(plan: dict[str, Any]) -> None:
    """A Limit over the row lock over an index scan of the pending index; nothing sorted, no
    bitmap or sequential scan of the jobs table anywhere in the statement."""
    shown = json.dumps(plan, indent=1)
    for node in coldburst.nodes(plan):
        assert node["Node Type"] not in {"Sort", "Incremental Sort"}, shown
        if node.get("Relation Name") == "jobs":
            assert node["Node Type"] not in {"Bitmap Heap Scan", "Seq Scan"}, shown
        assert node.get("Index Name") != PENDING_INDEX or node["Node Type"] == "Index Scan", shown
    chains = [
        (limit, limit["Plans"][0], limit["Plans"][0]["Plans"][0])
        for limit in coldburst.nodes(plan)
        if limit["Node Type"] == "Limit"
        and limit["Plans"][0]["Node Type"] == "LockRows"
        and "Plans" in limit["Plans"][0]
    ]
    assert [scan.get("Index Name") for _, _, scan in chains] == [PENDING_INDEX], shown
    [(_, _, scan)] = chains
    assert scan["Node Type"] == "Index Scan" and scan["Scan Direction"] == "Forward", shown


@pytest.mark.parametrize("state", STATES, ids=[state.name for state in STATES])
def test_custom_plan_reads_the_pending_index_to_the_first_row(conn: Conn, state: coldburst.State) -> None:
    state.build(conn)
    assert_claim_stops_at_the_first_row(custom_plan(conn, state.queues))


@pytest.mark.parametrize("state", STATES, ids=[state.name for state in STATES])
def test_generic_plan_reads_the_pending_index_to_the_first_row(conn: Conn, state: coldburst.State) -> None:
    state.build(conn)
    assert_claim_stops_at_the_first_row(generic_plan(conn, state.queues))


def test_the_check_sees_a_sorted_plan(conn: Conn) -> None:
    """The assertion itself fails on the plan it guards against."""
    coldburst.insert(conn, 2_000)
    conn.execute("SET enable_indexscan = off")
    with pytest.raises(AssertionError):
        assert_claim_stops_at_the_first_row(custom_plan(conn, ("default",)))


#: Pending rows at the head of the index (High, oldest) of a task the claiming worker lacks.
LACKING = 20_000


def lacking_head(conn: Conn, *, analyze_after: bool) -> None:
    """A mixed fleet's queue: the first LACKING pending rows are of a task the worker (tasks
    ['noop'], coldburst.claim_parameters) cannot run, then a burst of its own; analyzed before
    the rows came (statistics that know nothing) or after (that know the head is someone else's)."""
    coldburst.analyze(conn)
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority) SELECT 'elsewhere', 2 FROM generate_series(1, %s)",
        [LACKING],
    )
    coldburst.insert(conn, 2_000)
    if analyze_after:
        coldburst.analyze(conn)


@pytest.mark.parametrize("analyze_after", [False, True], ids=["analyzed before", "analyzed after"])
def test_a_head_of_tasks_the_worker_lacks_is_stepped_over_in_index_order(
    conn: Conn, analyze_after: bool
) -> None:
    """The task filter keeps the plan (the CASE hides it from the estimate as it hides the queue),
    and the claim walks the index over the rows it cannot run to its first own one: a cost in
    proportion to them (docs/architecture.md gives the figures), not a scan and sort of all."""
    lacking_head(conn, analyze_after=analyze_after)
    assert_claim_stops_at_the_first_row(custom_plan(conn, ("default",)))
    assert_claim_stops_at_the_first_row(generic_plan(conn, ("default",)))
    conn.execute("RESET plan_cache_mode")
    with conn.transaction(force_rollback=True):
        row = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM, coldburst.claim_parameters(("default",))
        ).fetchone()
        assert row is not None
        [scan] = [
            node for node in coldburst.nodes(row[0][0]["Plan"]) if node.get("Index Name") == PENDING_INDEX
        ]
        assert scan["Actual Rows"] == 1 and scan["Rows Removed by Filter"] == LACKING
