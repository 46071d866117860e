"""How cost grows: the claim + complete path with 1k … 1M pending rows, with many finished rows
retained, and with the dead tuples a drained batch leaves behind (before and after VACUUM).

Every measurement is a store-level loop (the harness's "Python floor"): `jobs.claim` then
`jobs.complete_and_claim` on psycopg connections, no worker around it, so the figure is the
queue's own cost. One connection times every round trip (claim latency p50/p99, jobs/s); four
connections in one asyncio loop give a concurrent rate. Each case drains `drain` jobs (4,000)
out of a table of the given shape; `EXPLAIN (ANALYZE, BUFFERS)` of the bare claim
(`job_complete_and_claim` with a NULL job id, rolled back) is captured before and after.

The machine is shared, so every case is paired with a **reference** measured just before it,
on the same server: the same loop on a fresh table holding only the `drain` jobs. The ratio
case / reference is the growth; absolute numbers drift.

Tables are filled with one `jobs.enqueue` (INSERT … SELECT generate_series); finished rows are
enqueued then marked completed with one UPDATE. A drained batch is simulated the same way (one
UPDATE pending → completed leaves exactly what draining leaves in the pending index: entries
pointing at dead heap tuples), with autovacuum off for that table so the "before VACUUM"
measurement is not raced by it. Then the same table after VACUUM, after deleting its finished
rows, and a drain while a transaction older than it stays open (an old snapshot).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from bench import environment
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store import connecting, jobs
from pgjobs.store.queries import QUERIES
from pgjobs.store.records import NewJob

NOOP = NewJob("noop")
QUEUES = ["default"]

MARK_COMPLETED = """
UPDATE pgjobs.jobs
SET state = 'completed', attempt = 1, progress = 100, started_at = now(), finished_at = now(),
    worker_id = %(worker)s, lease = nextval('pgjobs.lease_seq'), change_count = change_count + 2
WHERE state = 'pending' AND id <= %(last_id)s
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- filling ------------------------------------------------------------------


def _fill(database: environment.Database, pending: int, finished: int = 0, *, analyze: bool = True) -> None:
    """`finished` completed rows (lowest ids, as a drained history has) then `pending` pending."""

    async def run() -> None:
        conn = await connecting.connect(connecting.DatabaseSettings(url=database.url))
        async with conn:
            if finished:
                await jobs.enqueue(conn, NOOP, finished)
                await conn.execute(MARK_COMPLETED, {"worker": uuid.uuid4(), "last_id": 2**62})
            if pending:
                await jobs.enqueue(conn, NOOP, pending)

    asyncio.run(run())
    if analyze:
        with database.connect() as conn:
            conn.execute("VACUUM ANALYZE pgjobs.jobs")


# -- measuring ----------------------------------------------------------------


async def _loop_one(url: str, count: int) -> dict[str, Any]:
    """One connection: claim, then complete_and_claim `count` times; every round trip timed."""
    conn = await connecting.connect(connecting.DatabaseSettings(url=url))
    worker = uuid.uuid4()
    times: list[float] = []
    async with conn:
        began = time.perf_counter()
        job = await jobs.claim(conn, worker, QUEUES)
        times.append(time.perf_counter() - began)
        first_ms = 1000 * times[0]
        done = 0
        while job is not None and done < count:
            t0 = time.perf_counter()
            job = (await jobs.complete_and_claim(conn, job, None, None, worker, QUEUES)).job
            times.append(time.perf_counter() - t0)
            done += 1
        total = time.perf_counter() - began
    ms = [1000 * t for t in times]
    return {
        "jobs": done,
        "jobs_per_s": done / total if total else 0.0,
        "first_claim_ms": first_ms,
        "p50_ms": _percentile(ms, 0.50),
        "p99_ms": _percentile(ms, 0.99),
        "max_ms": max(ms),
    }


async def _loop_many(url: str, count: int, connections: int) -> float:
    """`connections` connections in one loop completing `count` jobs between them: jobs/s."""
    remaining = count

    async def one() -> int:
        nonlocal remaining
        conn = await connecting.connect(connecting.DatabaseSettings(url=url))
        worker, done = uuid.uuid4(), 0
        async with conn:
            job = await jobs.claim(conn, worker, QUEUES)
            while job is not None:
                remaining -= 1
                if remaining < 0:
                    await jobs.complete(conn, job, None)
                    return done + 1
                job = (await jobs.complete_and_claim(conn, job, None, None, worker, QUEUES)).job
                done += 1
        return done

    began = time.perf_counter()
    done = sum(await asyncio.gather(*(one() for _ in range(connections))))
    return done / (time.perf_counter() - began)


def _explain(database: environment.Database) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the bare claim, in a transaction rolled back."""
    params = {"job_id": None, "lease": None, "result": None, "message": None,
              "worker_id": uuid.uuid4(), "queues": QUEUES, "tasks": ["noop"]}  # fmt: skip
    with psycopg.connect(database.url) as conn:
        rows = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + QUERIES["job_complete_and_claim"], params
        )
        plan = "\n".join(row[0] for row in rows.fetchall())
        conn.rollback()
    execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
    # The claim's inner index scan: the line of jobs_pending_idx and its Buffers line.
    scan = re.search(r"Index Scan using (\w+) on jobs.*?\n(?:.*\n)*?\s+Buffers: (shared[^\n]*)", plan)
    buffers = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", scan.group(2))) if scan else None
    return {
        "execution_ms": float(execution.group(1)) if execution else None,
        "index": scan.group(1) if scan else None,
        "index_scan_buffers": buffers,
        "plan": plan,
    }


def _table_stats(database: environment.Database) -> dict[str, Any]:
    with database.connect() as conn:
        row = conn.execute(
            """
            SELECT n_live_tup, n_dead_tup,
                   pg_relation_size('pgjobs.jobs') AS heap_bytes,
                   pg_relation_size('pgjobs.jobs_pending_idx') AS pending_index_bytes,
                   (SELECT count(*) FROM pgjobs.jobs WHERE state = 'pending') AS pending
            FROM pg_stat_user_tables WHERE relid = 'pgjobs.jobs'::regclass
            """
        ).fetchone()
    return dict(row or {})


def _measure(database: environment.Database, drain: int) -> dict[str, Any]:
    result: dict[str, Any] = {"before": _table_stats(database), "explain": _explain(database)}
    result["one_connection"] = asyncio.run(_loop_one(database.url, drain // 2))
    result["four_connections_jobs_per_s"] = asyncio.run(_loop_many(database.url, drain // 2 - 10, 4))
    result["explain_after"] = _explain(database)  # the steady state, a few jobs still pending
    return result


def _drop(database: environment.Database) -> None:
    with psycopg.connect(database.server.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")


def _case(
    server: PostgresServer,
    label: str,
    drain: int,
    build: Any,
    database: environment.Database | None = None,
) -> dict[str, Any]:
    """Reference first (a fresh table holding only `drain` jobs), then `build` the case's table
    (a fresh database unless one is given), top it up to `drain` pending jobs, measure."""
    ref_db = environment.pgjobs_database(server, "sc_ref")
    _fill(ref_db, drain)
    reference = _measure(ref_db, drain)
    _drop(ref_db)
    fresh = database is None
    database = database or environment.pgjobs_database(server, "sc_case")
    began = time.perf_counter()
    extra = build(database) or {}
    with database.connect() as conn:
        pending = conn.execute("SELECT count(*) AS n FROM pgjobs.jobs WHERE state = 'pending'").fetchone()
    if pending["n"] < drain:  # appended as new rows, no VACUUM
        _fill(database, drain - pending["n"], analyze=False)
    fill_s = time.perf_counter() - began
    measured = _measure(database, drain)
    if fresh and not extra.pop("keep", False):
        _drop(database)
    one, ref = measured["one_connection"], reference["one_connection"]
    return {
        "case": label,
        "fill_s": round(fill_s, 1),
        **extra,
        **measured,
        "reference": reference,
        "ratio_p50": one["p50_ms"] / ref["p50_ms"],
        "ratio_p99": one["p99_ms"] / ref["p99_ms"],
        "ratio_rate_1": one["jobs_per_s"] / ref["jobs_per_s"],
        "ratio_rate_4": measured["four_connections_jobs_per_s"] / reference["four_connections_jobs_per_s"],
    }


# -- the cases ----------------------------------------------------------------


def _drain_batch(db: environment.Database, dead: int, drain: int) -> float:
    """`dead` + `drain` pending jobs, then the first `dead` completed by one UPDATE (autovacuum off)."""
    with db.connect() as conn:
        conn.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = false)")
    _fill(db, dead + drain)
    with db.connect() as conn:
        last = conn.execute("SELECT min(id) + %s - 1 AS last FROM pgjobs.jobs", (dead,)).fetchone()
        began = time.perf_counter()
        conn.execute(MARK_COMPLETED, {"worker": uuid.uuid4(), "last_id": last["last"]})
        return time.perf_counter() - began


def run(
    server: PostgresServer, pending_sizes: list[int], finished: int, dead: int, drain: int = 4000
) -> dict[str, Any]:
    cases: list[dict[str, Any]] = []

    def done(row: dict[str, Any]) -> None:
        cases.append(row)
        one, plan = row["one_connection"], row["explain"]
        environment.progress(
            f"scaling {row['case']}: claim p50 {one['p50_ms']:.2f} ms (x{row['ratio_p50']:.2f} of ref),"
            f" p99 {one['p99_ms']:.2f} ms, {one['jobs_per_s']:.0f}/s 1 conn (x{row['ratio_rate_1']:.2f}),"
            f" {row['four_connections_jobs_per_s']:.0f}/s 4 conn (x{row['ratio_rate_4']:.2f});"
            f" claim plan {plan['execution_ms']} ms, {plan['index_scan_buffers']} buffers"
        )

    for size in pending_sizes:
        done(_case(server, f"{size:,} pending", drain, lambda db, n=size: _fill(db, max(n, drain))))

    done(_case(server, f"{finished:,} finished + {drain:,} pending", drain,
               lambda db: _fill(db, drain, finished)))  # fmt: skip

    kept: dict[str, environment.Database] = {}

    def drained(db: environment.Database) -> dict[str, Any]:
        kept["db"] = db
        return {"completed_by_update_s": round(_drain_batch(db, dead, drain), 1), "keep": True}

    done(_case(server, f"{dead:,} drained ahead, no VACUUM", drain, drained))
    db = kept["db"]

    def vacuumed(db: environment.Database) -> dict[str, Any]:
        with db.connect() as conn:
            began = time.perf_counter()
            conn.execute("VACUUM pgjobs.jobs")
            return {"vacuum_s": round(time.perf_counter() - began, 1)}

    done(_case(server, f"{dead:,} drained ahead, after VACUUM", drain, vacuumed, db))

    def deleted(db: environment.Database) -> dict[str, Any]:
        with db.connect() as conn:
            began = time.perf_counter()
            gone = conn.execute("DELETE FROM pgjobs.jobs WHERE state = 'completed'").rowcount
            return {"deleted_rows": gone, "delete_s": round(time.perf_counter() - began, 1)}

    done(_case(server, f"{dead:,} finished rows deleted, no VACUUM", drain, deleted, db))
    _drop(db)

    # The old-snapshot trap: a transaction open since before the drain keeps every dead entry
    # visible to someone, so no claim can skip it for good. Fewer claims: each walks them all.
    small = max(20, drain // 10)
    holder: list[psycopg.Connection[Any]] = []

    def held(db: environment.Database) -> dict[str, Any]:
        with db.connect() as conn:
            conn.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = false)")
        _fill(db, dead + small)
        snapshot = psycopg.connect(db.url)
        snapshot.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot.execute("SELECT count(*) FROM pgjobs.workers")
        holder.append(snapshot)
        with db.connect() as conn:
            last = conn.execute("SELECT min(id) + %s - 1 AS last FROM pgjobs.jobs", (dead,)).fetchone()
            conn.execute(MARK_COMPLETED, {"worker": uuid.uuid4(), "last_id": last["last"]})
        return {"claims_measured": small}

    try:
        row = _case(server, f"{dead:,} drained ahead, old snapshot open", small, held)
    finally:
        for snapshot in holder:
            snapshot.close()
    done(row)
    return {
        "drain": drain,
        "pending_sizes": pending_sizes,
        "finished": finished,
        "dead": dead,
        "cases": cases,
    }
