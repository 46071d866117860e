"""Soak: millions of noop jobs through one 8-slot worker at 80% of its capacity, for as long as
that takes, watching what a long steady load does to the claim and to the table.

On a durable server with the project's autovacuum settings (migration 0003), PostgreSQL and
the worker on the same CPUs, the run first measures the worker's capacity (`_measure_capacity`:
a backlog kept topped up for `CAPACITY_S`, with the prune running, long enough for autovacuum
to pass twice), then a producer enqueues jobs in batches at `LOAD` of it while the operator's
finished-job prune runs as the leader's does (`jobs.prune_finished`, batches of
`maintenance.PRUNE_BATCH` every `maintenance_interval`, with a retention of `RETENTION_S` so
the table stays small; see `_prune`). Every `SAMPLE_S` it records the claim round trips'
p50/p99 (the worker's histograms over the window), dead tuples, the size of `jobs_claim_idx`,
autovacuum runs and WAL written.

It holds when the claim p99 at the end is within `P99_LIMIT` of the start and the pending index
stops growing (`verdict`). `idle_transaction` holds a session idle in a transaction with an
xid for `IDLE_HOLD_S` in the middle of the run: what `pgjobs_oldest_snapshot_age_seconds` warns
of (no dead row can be removed while it is open).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench import environment
from pgjobs.devenv.postgres import PostgresServer, free_port
from pgjobs.operator import maintenance
from pgjobs.operator.settings import OperatorSettings
from pgjobs.store import connecting, horizon, jobs
from pgjobs.store.queries import Connection
from pgjobs.store.records import NewJob

#: Fraction of the measured capacity the producer feeds.
LOAD = 0.8
SLOTS = 8
SAMPLE_S = 10.0
#: Seconds between the producer's batches.
BATCH_S = 0.1
#: Finished rows older than this are pruned (a deployment keeps them for days, see `_prune`).
RETENTION_S = 10.0
IDLE_HOLD_S = 300.0
#: The capacity phase: pending jobs kept topped up to this, for this long, counted after the warm-up.
CAPACITY_BACKLOG = 2_000
CAPACITY_S = 150.0
CAPACITY_WARMUP_S = 30.0
#: Holds: the p99 of the last windows is at most this times that of the first ones.
P99_LIMIT = 2.0
#: Holds: the index's largest size in the run's second half is at most this times the first half's.
INDEX_GROWTH_LIMIT = 1.5
#: Windows averaged for "start" and "end".
EDGE_WINDOWS = 6

STATS = """
SELECT n_live_tup AS live, n_dead_tup AS dead, autovacuum_count AS autovacuums,
       autoanalyze_count AS autoanalyzes,
       pg_relation_size('pgjobs.jobs_claim_idx') AS index_bytes,
       pg_relation_size('pgjobs.jobs') AS table_bytes,
       pg_total_relation_size('pgjobs.jobs') AS total_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal_lsn
FROM pg_stat_user_tables WHERE schemaname = 'pgjobs' AND relname = 'jobs'
"""
PENDING = "SELECT count(*) AS n FROM pgjobs.jobs WHERE state = 'pending'"
COMPLETED = 'pgjobs_worker_jobs_total{result="completed",task="noop"}'
CONFLICTS_RETRIED = "pgjobs_worker_conflicts_retried_total"
HISTOGRAMS = ("pgjobs_worker_claim_duration_seconds", "pgjobs_worker_complete_and_claim_duration_seconds")


@dataclasses.dataclass
class Run:
    """What the run's tasks share."""

    database: environment.Database
    metrics_port: int
    jobs: int
    rate: float
    began: float = 0.0
    produced: int = 0
    producing: bool = True
    #: (start, end) seconds into the run of the idle transaction, once it has ended.
    idle_window: list[float] = dataclasses.field(default_factory=list)
    pruned: int = 0
    capacity: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def settings(self) -> connecting.DatabaseSettings:
        return connecting.DatabaseSettings(url=self.database.url)

    def elapsed(self) -> float:
        return time.monotonic() - self.began


def run(
    server: PostgresServer,
    jobs_count: int,
    *,
    idle_transaction: bool = False,
    max_minutes: float | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """`jobs_count` jobs, or fewer if at the measured rate they would take over `max_minutes`;
    fed at `LOAD` of the measured capacity, or at `rate` jobs/s when given (the capacity phase
    can overstate what the worker sustains beside a steady producer for half an hour)."""
    database = environment.pgjobs_database(server, "soak")
    port = free_port()
    options = ["--concurrency", str(SLOTS), "--metrics-port", str(port)]
    worker = environment.start_workers(database, 1, options)
    state = Run(database, port, jobs_count, 0.0)
    try:
        environment.wait_for_workers(database, 1)
        samples = asyncio.run(_soak(state, idle_transaction, max_minutes, rate))
    finally:
        environment.stop_processes(worker)
    return {
        "jobs": state.jobs,
        "jobs_asked": jobs_count,
        "slots": SLOTS,
        "load": LOAD,
        "capacity": state.capacity,
        "rate_target": state.rate,
        "rate_given": rate,
        "retention_s": RETENTION_S,
        "sample_s": SAMPLE_S,
        "pruned": state.pruned,
        "idle_transaction": {"held_s": IDLE_HOLD_S, "window_s": state.idle_window}
        if idle_transaction
        else None,
        "samples": samples,
        "verdict": verdict(samples),
    }


async def _soak(
    state: Run, idle_transaction: bool, max_minutes: float | None, rate: float | None
) -> list[dict[str, Any]]:
    tasks = [asyncio.create_task(_prune(state))]
    try:
        await _measure_capacity(state)
        state.rate = rate or LOAD * state.capacity["jobs_per_s"]
        if max_minutes is not None and state.jobs > state.rate * 60 * max_minutes:
            environment.progress(f"soak: {state.jobs:,} jobs would take over {max_minutes:g} minutes")
            state.jobs = int(state.rate * 60 * max_minutes)
        state.began = time.monotonic()
        tasks.append(asyncio.create_task(_produce(state)))
        if idle_transaction:
            tasks.append(asyncio.create_task(_hold_idle_transaction(state)))
        return await _sample(state)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _measure_capacity(state: Run) -> None:
    """The worker's rate with a backlog of `CAPACITY_BACKLOG` kept topped up and the prune running:
    what it sustains with the soak's own inserts and deletes on the same CPUs, and with the dead
    rows that pile up between two autovacuums (at most one a minute: autovacuum_naptime). The
    drain of a batch enqueued beforehand, or a 30-second phase, measured 1.3-2x what a steady
    feed then sustained."""
    conn = await connecting.connect(state.settings)
    async with conn:
        began, completed, counted = time.monotonic(), 0.0, 0.0
        while (elapsed := time.monotonic() - began) < CAPACITY_S:
            pending = int((await _fetch(conn, PENDING))["n"])
            if pending < CAPACITY_BACKLOG:
                await jobs.enqueue(conn, NewJob("noop"), CAPACITY_BACKLOG - pending)
            if not counted and elapsed >= CAPACITY_WARMUP_S:
                completed, counted = await _completed(state), time.monotonic()
            await asyncio.sleep(BATCH_S)
    done = await _completed(state) - completed
    span = time.monotonic() - counted
    state.capacity = {"backlog": CAPACITY_BACKLOG, "span_s": span, "jobs": done, "jobs_per_s": done / span}
    environment.progress(f"soak: capacity {done / span:.0f} jobs/s")


async def _completed(state: Run) -> float:
    return _counter(await asyncio.to_thread(_scrape, state.metrics_port), COMPLETED)


async def _produce(state: Run) -> None:
    """Batches every `BATCH_S`, each bringing the count up to `rate` times the elapsed time."""
    conn = await connecting.connect(state.settings)
    async with conn:
        while state.produced < state.jobs:
            due = min(state.jobs, int(state.rate * state.elapsed()))
            if due > state.produced:
                await jobs.enqueue(conn, NewJob("noop"), due - state.produced)
                state.produced = due
            await asyncio.sleep(BATCH_S)
    state.producing = False


async def _prune(state: Run) -> None:
    """The leader's prune step with a short retention. The leader deletes one batch
    (`PRUNE_BATCH`) per maintenance round: at most 200 rows/s with the default 5 s round, less
    than this load finishes, so here the step is repeated within a round until a batch comes back
    short (the table would otherwise grow by the difference for the whole run)."""
    interval = OperatorSettings().maintenance_interval
    conn = await connecting.connect(state.settings)
    async with conn:
        while True:
            while True:
                pruned = await jobs.prune_finished(conn, RETENTION_S, maintenance.PRUNE_BATCH)
                state.pruned += pruned
                if pruned < maintenance.PRUNE_BATCH:
                    break
            await asyncio.sleep(interval)


async def _hold_idle_transaction(state: Run) -> None:
    """A session idle in a transaction that has an xid, from the middle of the expected run."""
    expected = state.jobs / state.rate
    await asyncio.sleep(max(SAMPLE_S * EDGE_WINDOWS, expected / 2 - IDLE_HOLD_S / 2))
    conn = await psycopg.AsyncConnection.connect(state.database.url)
    async with conn:
        await conn.execute("SELECT txid_current()")
        started = state.elapsed()
        environment.progress(f"soak: a transaction left idle for {IDLE_HOLD_S:.0f} s")
        await asyncio.sleep(IDLE_HOLD_S)
        await conn.rollback()
        state.idle_window[:] = [started, state.elapsed()]
        environment.progress("soak: the idle transaction ended")


async def _sample(state: Run) -> list[dict[str, Any]]:
    """One sample every `SAMPLE_S` until every job is produced and finished."""
    samples: list[dict[str, Any]] = []
    conn = await connecting.connect(state.settings)
    async with conn:
        first = await _read(state, conn)
        previous = first
        while True:
            await asyncio.sleep(SAMPLE_S - (state.elapsed() % SAMPLE_S))
            current = await _read(state, conn)
            samples.append(_window(first, previous, current))
            previous = current
            _report(samples[-1], state)
            if not state.producing and current["pending"] == 0 and samples[-1]["completed"] >= state.jobs:
                return samples


async def _fetch(conn: Connection, statement: str) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        return (await (await cursor.execute(statement)).fetchone()) or {}


async def _read(state: Run, conn: Connection) -> dict[str, Any]:
    """Cumulative counters at one instant: the table's statistics and the worker's histograms."""
    stats = await _fetch(conn, STATS)
    pending = await _fetch(conn, PENDING)
    oldest = await horizon.oldest_snapshot(conn)
    text = await asyncio.to_thread(_scrape, state.metrics_port)
    return {
        "t": state.elapsed(),
        "produced": state.produced,
        "producing": state.producing,
        "pending": int(pending["n"]),
        "oldest_snapshot_s": oldest.age_seconds,
        "completed": _counter(text, COMPLETED),
        "conflicts_retried": _counter(text, CONFLICTS_RETRIED),
        "histograms": {name: _buckets(text, name) for name in HISTOGRAMS},
        **stats,
    }


def _window(first: dict[str, Any], before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """One sample: the state at its end, and rates and claim percentiles over its window."""
    span = now["t"] - before["t"]
    merged: dict[float, float] = {}
    claims: dict[str, Any] = {}
    for name in HISTOGRAMS:
        delta = {
            le: count - before["histograms"][name].get(le, 0.0)
            for le, count in now["histograms"][name].items()
        }
        for le, count in delta.items():
            merged[le] = merged.get(le, 0.0) + count
        claims[name.removeprefix("pgjobs_worker_").removesuffix("_duration_seconds")] = _quantiles(delta)
    return {
        "t_s": round(now["t"], 1),
        "produced": now["produced"],
        "producing": now["producing"],
        "completed": int(now["completed"] - first["completed"]),
        "completed_per_s": (now["completed"] - before["completed"]) / span,
        # Statements rolled back by a deadlock with another slot's and run again (links.py).
        "conflicts_retried": int(now["conflicts_retried"] - first["conflicts_retried"]),
        "pending": now["pending"],
        "claim": _quantiles(merged),
        "claim_by_statement": claims,
        "dead_tuples": now["dead"],
        "live_tuples": now["live"],
        "index_bytes": now["index_bytes"],
        "table_bytes": now["table_bytes"],
        "total_bytes": now["total_bytes"],
        "autovacuums": now["autovacuums"] - first["autovacuums"],
        "autoanalyzes": now["autoanalyzes"] - first["autoanalyzes"],
        "wal_bytes": now["wal_lsn"] - first["wal_lsn"],
        "wal_bytes_per_s": (now["wal_lsn"] - before["wal_lsn"]) / span,
        "oldest_snapshot_s": now["oldest_snapshot_s"],
        "load_average": os.getloadavg()[0],
    }


def _report(sample: dict[str, Any], state: Run) -> None:
    claim = sample["claim"]
    environment.progress(
        f"soak {sample['t_s']:.0f}s: {sample['completed']:,}/{state.jobs:,} done,"
        f" {sample['completed_per_s']:.0f}/s, pending {sample['pending']:,},"
        f" claim p50 {claim['p50_ms']:.2f} p99 {claim['p99_ms']:.2f} ms,"
        f" dead {sample['dead_tuples']:,}, index {sample['index_bytes'] / 1024:.0f} kB,"
        f" autovacuums {sample['autovacuums']}, WAL {sample['wal_bytes'] / 2**20:.0f} MB,"
        f" conflicts retried {sample['conflicts_retried']}"
    )


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _counter(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _buckets(text: str, name: str) -> dict[float, float]:
    """Upper bound → cumulative count of one histogram (+Inf as infinity)."""
    pattern = rf'^{re.escape(name)}_bucket{{le="([^"]+)"}} (\S+)$'
    return {float(le): float(count) for le, count in re.findall(pattern, text, re.MULTILINE)}


def _quantiles(cumulative: dict[float, float]) -> dict[str, float | None]:
    """p50/p99 (ms) of a window's cumulative bucket counts, linear within a bucket (as
    Prometheus's histogram_quantile)."""
    bounds = sorted(cumulative)
    total = cumulative.get(float("inf"), 0.0)

    def at(fraction: float) -> float | None:
        if total <= 0:
            return None
        rank, lower, below = fraction * total, 0.0, 0.0
        for bound in bounds:
            count = cumulative[bound]
            if count >= rank:
                if bound == float("inf"):
                    return lower * 1000
                return (lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)) * 1000
            lower, below = bound, count
        return lower * 1000

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "claims": total}


def _edge(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s["claim"][key] for s in samples if s["claim"][key] is not None]
    return statistics.fmean(values) if values else None


def verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Holds: the claim p99 of the last `EDGE_WINDOWS` full windows under load within `P99_LIMIT`
    of the first ones', and the pending index no larger in the second half than
    `INDEX_GROWTH_LIMIT` times the first half's largest."""
    loaded = [s for s in samples if s["producing"]] or samples  # not the drain at the end
    start, end = _edge(loaded[:EDGE_WINDOWS], "p99_ms"), _edge(loaded[-EDGE_WINDOWS:], "p99_ms")
    half = len(samples) // 2
    sizes = [s["index_bytes"] for s in samples]
    first_max, second_max = max(sizes[: max(half, 1)]), max(sizes[half:] or sizes)
    p99_holds = start is not None and end is not None and end <= P99_LIMIT * start
    index_holds = second_max <= INDEX_GROWTH_LIMIT * first_max
    return {
        "p99_start_ms": start,
        "p99_end_ms": end,
        "p50_start_ms": _edge(loaded[:EDGE_WINDOWS], "p50_ms"),
        "p50_end_ms": _edge(loaded[-EDGE_WINDOWS:], "p50_ms"),
        "p99_ratio": end / start if start and end else None,
        "p99_limit": P99_LIMIT,
        "index_bytes_start": sizes[0],
        "index_bytes_max": max(sizes),
        "index_bytes_end": sizes[-1],
        "index_max_first_half": first_max,
        "index_max_second_half": second_max,
        "index_growth_limit": INDEX_GROWTH_LIMIT,
        "dead_tuples_max": max(s["dead_tuples"] for s in samples),
        "autovacuums": samples[-1]["autovacuums"],
        "wal_bytes": samples[-1]["wal_bytes"],
        "p99_holds": p99_holds,
        "index_holds": index_holds,
        "holds": p99_holds and index_holds,
    }


def summary(result: dict[str, Any]) -> str:
    v = result["verdict"]
    duration = result["samples"][-1]["t_s"]
    return "\n".join(
        [
            f"Soak: {result['jobs']:,} noop jobs, one {result['slots']}-slot worker, capacity"
            f" {result['capacity']['jobs_per_s']:.0f} jobs/s, fed at {result['rate_target']:.0f} jobs/s"
            f" ({result['rate_target'] / result['capacity']['jobs_per_s']:.0%}), {duration:.0f} s",
            f"claim p50 {_ms(v['p50_start_ms'])} → {_ms(v['p50_end_ms'])} ms,"
            f" p99 {_ms(v['p99_start_ms'])} → {_ms(v['p99_end_ms'])} ms (limit {v['p99_limit']}x)",
            f"jobs_claim_idx: {v['index_bytes_start'] / 1024:.0f} kB at start, max"
            f" {v['index_bytes_max'] / 1024:.0f} kB, {v['index_bytes_end'] / 1024:.0f} kB at end",
            f"dead tuples max {v['dead_tuples_max']:,}, autovacuum runs {v['autovacuums']},"
            f" WAL {v['wal_bytes'] / 2**30:.2f} GiB",
            f"verdict: {'holds' if v['holds'] else 'DOES NOT HOLD'}"
            f" (p99 {'held' if v['p99_holds'] else 'missed'},"
            f" index {'bounded' if v['index_holds'] else 'grew'})",
        ]
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def plot(result: dict[str, Any], path: Path) -> str:
    """Eight panels over time; returns what was written (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot: skipped (matplotlib is not installed)"
    samples = result["samples"]
    minutes = [s["t_s"] / 60 for s in samples]
    figure, axes = plt.subplots(4, 2, figsize=(12, 13), sharex=True)
    for axis, (title, series) in zip(axes.flat, _panels(result), strict=True):
        for label, values in series:
            axis.plot(minutes, values, label=label)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if len(series) > 1:
            axis.legend()
        _shade_idle(axis, result)
    axes[0][1].set_yscale("log")
    axes[2][0].set_yscale("log")
    for axis in axes[3]:
        axis.set_xlabel("minutes")
    figure.suptitle(summary(result).splitlines()[0], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return f"plot: {path}"


def _panels(result: dict[str, Any]) -> list[tuple[str, list[tuple[str, list[Any]]]]]:
    samples = result["samples"]

    def series(key: str, scale: float = 1.0) -> list[Any]:
        return [s[key] / scale for s in samples]

    return [
        (
            "jobs/s",
            [("completed", series("completed_per_s")), ("fed", [result["rate_target"]] * len(samples))],
        ),
        (
            "claim round trip (ms)",
            [
                ("p50", [s["claim"]["p50_ms"] for s in samples]),
                ("p99", [s["claim"]["p99_ms"] for s in samples]),
            ],
        ),
        ("pending jobs", [("pending", series("pending"))]),
        ("dead tuples (pgjobs.jobs)", [("n_dead_tup", series("dead_tuples"))]),
        (
            "size (kB)",
            [("jobs_claim_idx", series("index_bytes", 1024)), ("heap", series("table_bytes", 1024))],
        ),
        ("autovacuum runs (cumulative)", [("autovacuum_count", series("autovacuums"))]),
        ("WAL (MB/s)", [("WAL", series("wal_bytes_per_s", 2**20))]),
        (
            "load average (1 min) / oldest open transaction (s)",
            [("load average", series("load_average")), ("oldest transaction", series("oldest_snapshot_s"))],
        ),
    ]


def _shade_idle(axis: Any, result: dict[str, Any]) -> None:
    window = (result.get("idle_transaction") or {}).get("window_s")
    if window:
        axis.axvspan(window[0] / 60, window[1] / 60, color="orange", alpha=0.2)
