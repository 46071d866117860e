"""Cold burst: the claim when the jobs table's statistics are stale, and a burst drained then.

A fresh install, or a queue that sat empty, has statistics that say the table is empty; a burst
of jobs arrives before autovacuum's next ANALYZE. Two measurements:

- **claim plans**: for each statistics state (never analyzed, analyzed empty, analyzed small
  then grown, analyzed holding only finished jobs, a burst in a queue the statistics never saw,
  heavy dead tuples), the plan of the bare claim (`job_complete_and_claim` with no job to
  complete) and its server time, from `EXPLAIN (ANALYZE)` in a transaction rolled back (the
  median of several; the first run is kept too: it pays for cold pages and dead entries).
- **drain**: `workers` burst workers drain `jobs` noop jobs enqueued into a table analyzed while
  empty (cold), and the same burst after an ANALYZE (the baseline), in the same run.

Autovacuum is off for the jobs table in both drains and in every state, so that its ANALYZE
cannot end a state halfway (with it on, the cold drain would improve at an arbitrary point).
tests/integration/test_claim_plan.py asserts the plans of the same states.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from bench import environment, throughput
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store.queries import STATEMENTS

SIZES = {
    "full": {"burst": 20_000, "workers": 8, "grown": 1_000_000, "claims": 15},
    "quick": {"burst": 5_000, "workers": 4, "grown": 200_000, "claims": 7},
}
CLAIM = STATEMENTS["job_complete_and_claim"]
Conn = psycopg.Connection[Any]


def insert(conn: Conn, count: int, *, state: str = "pending", queue: str = "default") -> None:
    """`count` jobs of all three priorities in one statement, as a burst of enqueues leaves them."""
    conn.execute(
        "INSERT INTO pgjobs.jobs (task, priority, queue, state)"
        " SELECT 'noop', g %% 3, %s, %s::pgjobs.job_state FROM generate_series(1, %s) AS g",
        [queue, state, count],
    )


def analyze(conn: Conn) -> None:
    conn.execute("ANALYZE pgjobs.jobs")


def without_autovacuum(conn: Conn) -> None:
    """Autovacuum would analyze the table as soon as it grew, ending the state being measured."""
    conn.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = false)")


@dataclasses.dataclass(frozen=True)
class State:
    """A statistics state: `build` brings an empty, freshly migrated jobs table into it."""

    name: str
    build: Callable[[Conn], None]
    queues: tuple[str, ...] = ("default",)


def states(burst: int, grown: int) -> list[State]:
    """The statistics states a jobs table meets, with `burst` pending jobs (`grown` where it grew)."""

    def never_analyzed(conn: Conn) -> None:
        insert(conn, burst)

    def analyzed_empty(conn: Conn) -> None:
        analyze(conn)
        insert(conn, burst)

    def emptied_then_analyzed(conn: Conn) -> None:
        # A drained queue whose rows were deleted (a prune) and then vacuumed and analyzed: the
        # table has pages, the statistics say it holds nothing.
        insert(conn, grown)
        conn.execute("DELETE FROM pgjobs.jobs")
        conn.execute("VACUUM ANALYZE pgjobs.jobs")
        insert(conn, burst)

    def analyzed_small_then_grown(conn: Conn) -> None:
        insert(conn, 100)
        analyze(conn)
        insert(conn, grown)

    def analyzed_with_only_finished_jobs(conn: Conn) -> None:
        # A queue that sat empty with its history kept: the statistics say nothing is pending.
        insert(conn, 5_000, state="completed")
        analyze(conn)
        insert(conn, burst)

    def burst_in_an_unseen_queue(conn: Conn) -> None:
        insert(conn, 1_000)
        analyze(conn)
        insert(conn, burst, queue="other")

    def heavy_dead_tuples(conn: Conn) -> None:
        # A drained batch not yet vacuumed: its entries stay at the head of the pending index.
        insert(conn, 100)
        analyze(conn)
        insert(conn, grown)
        conn.execute("UPDATE pgjobs.jobs SET state = 'completed' WHERE id <= %s", [grown * 19 // 20])

    return [
        State("never analyzed", never_analyzed),
        State("analyzed empty", analyzed_empty),
        State("emptied by deletes, then vacuumed and analyzed", emptied_then_analyzed),
        State(f"analyzed small then grown to {grown:,}", analyzed_small_then_grown),
        State("analyzed with only finished jobs", analyzed_with_only_finished_jobs),
        State("burst in a queue the statistics never saw", burst_in_an_unseen_queue, ("other",)),
        State(f"heavy dead tuples ({grown * 19 // 20:,} of {grown:,})", heavy_dead_tuples),
    ]


def claim_parameters(queues: tuple[str, ...]) -> dict[str, Any]:
    """A bare claim, as a slot's first claim sends it: no job to complete."""
    return {
        "result": None,
        "message": None,
        "job_id": None,
        "lease": None,
        "worker_id": uuid.uuid4(),
        "queues": list(queues),
        "tasks": ["noop"],
        "was_idle": False,
    }


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def claim_path(plan: dict[str, Any]) -> str:
    """The claim's subplan, from its Limit down to its read of the jobs table:
    `Limit > Nested Loop > … > Index Scan jobs_claim_idx` (the completion's count, a Limit over
    a CTE, is not it)."""
    for node in nodes(plan):
        if node["Node Type"] == "Limit":
            path = _path_to_jobs(node)
            if path:
                return " > ".join(path)
    return "(no Limit)"


def _path_to_jobs(node: dict[str, Any]) -> list[str]:
    """The nodes from `node` down to the first read of pgjobs.jobs (depth first), or []."""
    name = node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "")
    if node.get("Relation Name") == "jobs":
        return [name]
    for child in node.get("Plans", []):
        below = _path_to_jobs(child)
        if below:
            return [name, *below]
    return []


def measure_claims(conn: Conn, queues: tuple[str, ...], runs: int) -> dict[str, Any]:
    """Server milliseconds of the bare claim (planning + execution), each run rolled back."""
    times, plan = [], {}
    for _ in range(runs):
        with conn.transaction(force_rollback=True):
            row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM, claim_parameters(queues)).fetchone()
        assert row is not None
        explained = row[0][0]
        plan = explained["Plan"]
        times.append(float(explained["Planning Time"]) + float(explained["Execution Time"]))
    return {
        "plan": claim_path(plan),
        "first_ms": times[0],
        "median_ms": statistics.median(times),
    }


def run_states(server: PostgresServer, size: dict[str, int]) -> list[dict[str, Any]]:
    rows = []
    for number, state in enumerate(states(size["burst"], size["grown"])):
        database = environment.pgjobs_database(server, f"cold_state_{number}")
        with psycopg.connect(database.url, autocommit=True) as conn:
            without_autovacuum(conn)
            state.build(conn)
            rows.append({"state": state.name, **measure_claims(conn, state.queues, size["claims"])})
    return rows


def drain(server: PostgresServer, size: dict[str, int], *, analyzed: bool) -> dict[str, Any]:
    """A burst drained by burst workers: into a table analyzed empty, then ANALYZE'd or not."""
    database = environment.pgjobs_database(server, "cold_drain" if not analyzed else "warm_drain")
    with psycopg.connect(database.url, autocommit=True) as conn:
        without_autovacuum(conn)
        analyze(conn)
        insert(conn, size["burst"])
        if analyzed:
            analyze(conn)
        plan = measure_claims(conn, ("default",), 1)["plan"]
    began = time.perf_counter()
    processes = environment.start_workers(database, size["workers"], ["--burst"])
    codes, cpu = environment.wait_with_cpu(processes)
    with database.connect() as conn:
        row = conn.execute(throughput.PGJOBS_SPAN).fetchone()
    assert row is not None
    span = float(row["span"] or 0.0)
    return {
        "analyzed": analyzed,
        "plan": plan,
        "completed": int(row["done"]),
        "drain_s": span,
        "jobs_per_s": int(row["done"]) / span if span else 0.0,
        "wall_s": time.perf_counter() - began,
        "exit_codes": codes,
        "worker_cpu_s": cpu,
    }


def run(server: PostgresServer, *, quick: bool) -> dict[str, Any]:
    size = SIZES["quick" if quick else "full"]
    return {
        "sizes": size,
        "claim_plans": run_states(server, size),
        "drain": [drain(server, size, analyzed=False), drain(server, size, analyzed=True)],
    }


def table(results: dict[str, Any]) -> str:
    size = results["sizes"]
    out = [
        f"Cold burst: the bare claim per statistics state ({size['burst']:,} pending unless said;"
        " server ms = planning + execution, EXPLAIN ANALYZE rolled back)",
        f"{'state':<46} {'first':>7} {'median':>7}  plan",
    ]
    for row in results["claim_plans"]:
        out.append(f"{row['state']:<46} {row['first_ms']:7.2f} {row['median_ms']:7.2f}  {row['plan']}")
    out.append(
        f"Drain of {size['burst']:,} noop jobs by {size['workers']} burst workers"
        " (table analyzed empty before the burst; baseline: ANALYZE after it)"
    )
    for row in results["drain"]:
        label = "after ANALYZE (baseline)" if row["analyzed"] else "analyzed empty (cold)"
        out.append(f"  {label:<26} {row['drain_s']:7.2f} s  {row['jobs_per_s']:8.0f} jobs/s  {row['plan']}")
    return "\n".join(out)
