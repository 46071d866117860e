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
CLAIM_INDEX = "jobs_claim_idx"
#: What the completion (a running job by id: under stale statistics a generic plan may read a
#: partial index of running rows, bounded by the slots there are) and the update may read.
COMPLETION_INDEXES = {"jobs_pkey", "jobs_running_idx", "jobs_running_queue_idx"}
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


def _parents(plan: dict[str, Any]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every node with the nodes above it (nearest last)."""
    stack: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [(plan, [])]
    while stack:
        node, above = stack.pop()
        yield node, above
        stack.extend((child, [*above, node]) for child in node.get("Plans", []))


def assert_claim_stops_at_the_first_row(plan: dict[str, Any]) -> None:
    """Every read of pending jobs is a range of the claim index read forward to its first row (an
    Index Scan under the row lock under a Limit, bounded by queue, priority and run_after);
    nothing sorted below a lock, no bitmap or sequential scan of the jobs table anywhere in the
    statement, and no other index of it but those of the completion and the update."""
    shown = json.dumps(plan, indent=1)
    ranges = 0
    for node, above in _parents(plan):
        if node.get("Relation Name") != "jobs" or node["Node Type"] == "ModifyTable":
            continue
        assert node["Node Type"] == "Index Scan", shown
        assert node["Index Name"] in {CLAIM_INDEX, *COMPLETION_INDEXES}, shown
        if node["Index Name"] == CLAIM_INDEX:
            ranges += 1
            assert [parent["Node Type"] for parent in above[-2:]] == ["Limit", "LockRows"], shown
            assert node["Scan Direction"] == "Forward", shown
            condition = node["Index Cond"]
            assert all(column in condition for column in ("queue", "priority", "run_after")), shown
    assert ranges == 1, shown


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


def claim_index_scans(conn: Conn) -> list[dict[str, Any]]:
    """Check the custom and the generic plan of a bare claim of queue default, then run it (rolled
    back) and return its scans of the claim index, with their actual rows and buffers."""
    assert_claim_stops_at_the_first_row(custom_plan(conn, ("default",)))
    assert_claim_stops_at_the_first_row(generic_plan(conn, ("default",)))
    conn.execute("RESET plan_cache_mode")
    with conn.transaction(force_rollback=True):
        row = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + CLAIM, coldburst.claim_parameters(("default",))
        ).fetchone()
    assert row is not None
    return [node for node in coldburst.nodes(row[0][0]["Plan"]) if node.get("Index Name") == CLAIM_INDEX]


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
    [scan] = claim_index_scans(conn)
    assert scan["Actual Rows"] == 1 and scan["Rows Removed by Filter"] == LACKING


#: High jobs the claiming worker cannot take, waiting ahead of its own Regular ones.
BACKLOG = 20_000


def _backlog_elsewhere(conn: Conn) -> None:
    """(a) another queue's backlog (a tenant whose workers are scaled to zero)."""
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority, queue)"
        " SELECT 'noop', 2, 'other' FROM generate_series(1, %s)",
        [BACKLOG],
    )


def _backlog_no_worker_can_run(conn: Conn) -> None:
    """(b) the same queue, a task no worker has, waiting long enough for the leader's mark."""
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority, run_after)"
        " SELECT 'unknown', 2, now() - interval '10 minutes' FROM generate_series(1, %s)",
        [BACKLOG],
    )
    marked = conn.execute(STATEMENTS["job_mark_no_worker"], {"after_seconds": 120}).fetchone()
    assert marked is not None and marked[0] == BACKLOG
    # Marking leaves each row's old entry in the index until a vacuum removes it, as a claim
    # does (autovacuum, off in these tests, runs after that many changed rows).
    conn.execute("VACUUM pgjobs.jobs")


def _backlog_in_backoff(conn: Conn) -> None:
    """(c) the same queue and task, every job waiting out a retry's backoff."""
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority, attempt, run_after)"
        " SELECT 'noop', 2, 1, now() + interval '1 hour' FROM generate_series(1, %s)",
        [BACKLOG],
    )


BACKLOGS = {
    "another queue": _backlog_elsewhere,
    "a task no worker can run": _backlog_no_worker_can_run,
    "in backoff": _backlog_in_backoff,
}


@pytest.mark.parametrize("analyze_after", [False, True], ids=["analyzed before", "analyzed after"])
@pytest.mark.parametrize("backlog", list(BACKLOGS), ids=list(BACKLOGS))
def test_a_backlog_the_worker_cannot_take_costs_its_claim_nothing(
    conn: Conn, backlog: str, analyze_after: bool
) -> None:
    """The claim reads as many index entries and pages with 20,000 High jobs it cannot take
    ahead of its own as without them: none of them is in a range it reads."""
    coldburst.analyze(conn)
    BACKLOGS[backlog](conn)
    conn.execute("INSERT INTO pgjobs.jobs (task, priority) SELECT 'noop', 1 FROM generate_series(1, 100)")
    if analyze_after:
        coldburst.analyze(conn)
    scans = claim_index_scans(conn)
    shown = json.dumps(scans, indent=1)
    # One range per priority tried: High (empty of due jobs it can take), then Regular.
    assert [scan["Actual Loops"] for scan in scans] == [2], shown
    [scan] = scans
    # Rows per loop, rounded: the one claimed over two loops.
    assert scan["Actual Rows"] <= 1 and scan.get("Rows Removed by Filter", 0) == 0, shown
    assert scan["Shared Hit Blocks"] + scan["Shared Read Blocks"] <= 12, shown
