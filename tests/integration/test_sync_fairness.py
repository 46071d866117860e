"""The status sync is fair between namespaces, at the real PostgreSQL.

One namespace keeps hundreds of Running jobs reporting progress, more than the write budget can
copy; another namespace's single job completes. The sync takes namespaces in turns and, within
one, state changes before progress, so that job's Completed status (and with it its TTL, which
waits for the final status) is written within (namespaces with changes + syncing.QUEUED) writes,
whatever the size of the flood. The API server is a fake that records what was written and
when; everything else is the real status sync against the real database.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import psycopg
import pytest

from pgjobs.operator import context, kube, syncing
from pgjobs.operator.database import Database
from pgjobs.operator.settings import OperatorSettings
from pgjobs.store import connecting, hotpath, resources
from pgjobs.store.queries import STATEMENTS
from pgjobs.store.records import NewJob, ResourceJob

pytestmark = pytest.mark.integration

#: Status writes per second: small, so that the flood is far more than the budget.
RATE = 5.0
#: Running jobs in the flooding namespace, each reporting progress every FLOOD_INTERVAL.
FLOOD = 300
FLOOD_INTERVAL = 0.25
#: Namespaces with changes in the test: the flood's and the single job's.
NAMESPACES = 2
#: The promised bound: the namespaces ahead in the turn, the rows already queued, at the
#: budget's rate; plus a read interval and the writes' own time.
BOUND = (NAMESPACES + syncing.QUEUED) / RATE + 1.0
#: How long the test waits before it calls the status lost (the code before never wrote it).
PATIENCE = 3 * BOUND


class RecordingKube:
    """The API server's status subresource as the sync sees it: every write, and when."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, str, str, str]] = []

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any], _uid: str) -> bool:
        await asyncio.sleep(0.005)  # a round trip
        self.writes.append((time.monotonic(), namespace, name, str(status["phase"])))
        return True

    async def post_event(self, *_: object) -> None:
        return None

    def first(self, namespace: str, phase: str) -> float | None:
        return next((at for at, ns, _, seen in self.writes if ns == namespace and seen == phase), None)


def add_jobs(database: connecting.DatabaseSettings, namespace: str, count: int) -> None:
    """PgJobs whose rows run and whose Running status was copied already (the steady state)."""

    async def add() -> None:
        async with await connecting.connect(database) as conn:
            for number in range(count):
                job = ResourceJob(f"{namespace}-{number}", namespace, f"job-{number}", NewJob("sleep"))
                await resources.upsert(conn, job, 1)

    asyncio.run(add())
    with psycopg.connect(database.conninfo(), autocommit=True) as conn:
        conn.execute(
            "UPDATE pgjobs.jobs SET state = 'running', attempt = 1, started_at = now(),"
            " change_count = change_count + 1 WHERE resource_namespace = %s",
            [namespace],
        )
        conn.execute(
            "UPDATE pgjobs.jobs SET synced_count = change_count, synced_state = state,"
            " synced_attempt = attempt WHERE resource_namespace = %s",
            [namespace],
        )


async def flood(database: connecting.DatabaseSettings, namespace: str) -> None:
    """Every job of `namespace` reports progress every FLOOD_INTERVAL, as workers would."""
    async with await psycopg.AsyncConnection.connect(database.conninfo(), autocommit=True) as conn:
        while True:
            await conn.execute(
                "UPDATE pgjobs.jobs SET progress = (progress + 1) %% 100, change_count = change_count + 1"
                " WHERE resource_namespace = %s AND state = 'running'",
                [namespace],
            )
            await asyncio.sleep(FLOOD_INTERVAL)


async def complete(database: connecting.DatabaseSettings, namespace: str) -> None:
    async with await psycopg.AsyncConnection.connect(database.conninfo(), autocommit=True) as conn:
        await conn.execute(
            "UPDATE pgjobs.jobs SET state = 'completed', progress = 100, finished_at = now(),"
            " change_count = change_count + 1 WHERE resource_namespace = %s",
            [namespace],
        )


async def recorded(database: connecting.DatabaseSettings, namespace: str) -> bool:
    """Whether the row's copy is recorded: what the TTL clean-up (job_list_expired) waits for."""
    async with await psycopg.AsyncConnection.connect(database.conninfo(), autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT bool_and(change_count = synced_count) FROM pgjobs.jobs WHERE resource_namespace = %s",
            [namespace],
        )
        row = await cursor.fetchone()
        return bool(row and row[0])


def test_a_flood_of_progress_in_one_namespace_does_not_hold_back_another_namespaces_final_status(
    database: connecting.DatabaseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_jobs(database, "flooding", FLOOD)
    add_jobs(database, "quiet", 1)
    fake = RecordingKube()

    async def scenario() -> tuple[float | None, float | None, int]:
        settings = OperatorSettings(status_writes_per_second=RATE, status_write_burst=1)
        ctx = context.Context(
            settings,
            database,
            Database(database),
            cast(kube.KubeApi, fake),
            Database(database, max_size=2),
        )
        monkeypatch.setattr(ctx, "fence", lambda: None, raising=False)  # leadership is not under test
        await ctx.sync_database.open()
        async with asyncio.TaskGroup() as group:
            flooding = group.create_task(flood(database, "flooding"))
            sync = group.create_task(syncing.Syncer(ctx).run())
            await asyncio.sleep(3.0)  # the budget is spent on progress: the steady state of a flood
            await complete(database, "quiet")
            completed = time.monotonic()
            shown = recorded_at = None
            while time.monotonic() - completed < PATIENCE and recorded_at is None:
                await asyncio.sleep(0.05)
                shown = fake.first("quiet", "Completed")
                if shown is not None and await recorded(database, "quiet"):
                    recorded_at = time.monotonic()
            flooding_writes = sum(1 for at, ns, _, _ in fake.writes if ns == "flooding" and at > completed)
            flooding.cancel()
            sync.cancel()
        await ctx.sync_database.close()
        return (
            None if shown is None else shown - completed,
            None if recorded_at is None else recorded_at - completed,
            flooding_writes,
        )

    shown, recorded_after, flooding_writes = asyncio.run(scenario())
    print(f"Completed shown after {shown} s, recorded after {recorded_after} s (bound {BOUND:.1f} s)")
    assert shown is not None, f"the quiet namespace's Completed was not written within {PATIENCE:.0f} s"
    assert shown <= BOUND
    # The copy is recorded by the next read, which comes once half the queue is written.
    assert recorded_after is not None and recorded_after <= BOUND + syncing.QUEUED / 2 / RATE
    assert flooding_writes > 0, "the flood was starved instead"


def insert_rows(
    conn: psycopg.Connection[Any], namespace: str, count: int, state: str = "running"
) -> list[int]:
    """Rows of PgJobs whose Running status was copied and that changed since: progress only,
    or a state change when `state` is not running."""
    rows = conn.execute(
        "INSERT INTO pgjobs.jobs (task, state, attempt, resource_uid, resource_namespace, resource_name,"
        " change_count, synced_count, synced_state, synced_attempt, started_at)"
        " SELECT 'sleep', %s, 1, %s || '-' || g || '-' || random(), %s, 'job-' || g, 3, 2,"
        " 'running', 1, now()"
        " FROM generate_series(1, %s) AS g RETURNING id",
        [state, namespace, namespace, count],
    ).fetchall()
    return [int(row[0]) for row in rows]


def test_reads_take_namespaces_in_turn_state_changes_first_and_progress_in_a_round(
    database: connecting.DatabaseSettings,
) -> None:
    names = [f"ns-{number:02d}" for number in range(40)]  # more than one read's worth
    with psycopg.connect(database.conninfo(), autocommit=True) as conn:
        progress = {name: insert_rows(conn, name, 2) for name in names}
        (completed,) = insert_rows(conn, "ns-00", 1, "completed")
    turns = syncing.Turns()

    async def read(limit: int = 16, busy: tuple[int, ...] = ()) -> list[tuple[str, int]]:
        async with await connecting.connect(database) as conn:
            rows = await resources.list_unsynced(conn, limit, busy, turns.namespace, turns.after_ids)
            # Copied, and the running jobs report progress again at once.
            await resources.mark_synced(conn, rows)
            await conn.execute(
                "UPDATE pgjobs.jobs SET change_count = change_count + 1"
                " WHERE id = ANY(%s) AND state = 'running'",
                [[row.id for row in rows]],
            )
        turns.advance(rows)
        return [(row.resource_namespace, row.id) for row in rows]

    # One row per namespace and read, in turn; ns-00's state change before its progress.
    assert asyncio.run(read()) == [("ns-00", completed)] + [(name, progress[name][0]) for name in names[1:16]]
    assert asyncio.run(read()) == [(name, progress[name][0]) for name in names[16:32]]
    # The turn wraps around; ns-00's progress round starts at its first row, the others' go on.
    assert asyncio.run(read()) == [(name, progress[name][0]) for name in names[32:]] + [
        ("ns-00", progress["ns-00"][0])
    ] + [(name, progress[name][1]) for name in names[1:8]]
    # The round within a namespace wraps around too; rows being copied are left out.
    assert asyncio.run(read(limit=3, busy=(progress["ns-09"][0],))) == [
        ("ns-08", progress["ns-08"][1]),
        ("ns-09", progress["ns-09"][1]),
        ("ns-10", progress["ns-10"][1]),
    ]
    turns.namespace = "ns-39"
    assert asyncio.run(read(limit=3)) == [
        ("ns-00", progress["ns-00"][1]),
        ("ns-01", progress["ns-01"][0]),
        ("ns-02", progress["ns-02"][0]),
    ]


def test_a_read_with_few_namespaces_takes_several_rows_of_each_in_turn(
    database: connecting.DatabaseSettings,
) -> None:
    with psycopg.connect(database.conninfo(), autocommit=True) as conn:
        big = insert_rows(conn, "big", 10)
        small = insert_rows(conn, "small", 2)

    async def read() -> list[int]:
        async with await connecting.connect(database) as conn:
            return [row.id for row in await resources.list_unsynced(conn, 8)]

    assert asyncio.run(read()) == [big[0], small[0], big[1], small[1], *big[2:6]]


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


def test_a_read_touches_a_few_index_entries_on_a_large_table(database: connecting.DatabaseSettings) -> None:
    """200,000 finished rows, 20,000 changed ones in one namespace and 300 namespaces with a few
    each: a read of 16 rows probes the index per namespace and per turn, as a prepared statement
    (the generic plan) too, and never reads every changed row."""
    statement = STATEMENTS["resource_list_unsynced"]
    with psycopg.connect(database.conninfo(), autocommit=True) as conn:
        conn.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = false)")
        conn.execute(
            "INSERT INTO pgjobs.jobs (task, state, resource_uid, resource_namespace, resource_name,"
            " change_count, synced_count, synced_state, finished_at)"
            " SELECT 'sleep', 'completed', 'done-' || g, 'ns-' || (g % 50), 'done-' || g, 3, 3,"
            " 'completed', now() FROM generate_series(1, 200000) AS g"
        )
        insert_rows(conn, "flooding", 20_000)
        for number in range(300):
            insert_rows(conn, f"tenant-{number:03d}", 3)
        conn.execute("ANALYZE pgjobs.jobs")
        params = {
            "limit": 16,
            "busy": [],
            "after_namespace": "tenant-100",
            "cursor_namespaces": ["flooding"],
            "cursor_ids": [200_005],
        }
        text, names = hotpath.to_positional(statement)
        conn.execute(f"PREPARE sync_read AS {text}")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        # EXECUTE takes its arguments as literals (a utility statement has no bound parameters).
        literals = {
            "limit": "16",
            "busy": "'{}'",
            "after_namespace": "'tenant-100'",
            "cursor_namespaces": "'{flooding}'",
            "cursor_ids": "'{200005}'",
        }
        arguments = ", ".join(literals[name] for name in names)
        for explained in (
            conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params),
            conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE sync_read ({arguments})"),
        ):
            row = explained.fetchone()
            assert row is not None
            nodes = plan_nodes(row[0][0]["Plan"])
            scans = [node for node in nodes if node.get("Relation Name") == "jobs"]
            assert {node["Node Type"] for node in scans} <= {"Index Scan", "Index Only Scan"}
            read = sum(
                (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
                for node in scans
            )
            print(f"{read} index entries read, {row[0][0]['Execution Time']:.2f} ms")
            assert read <= 300, f"{read} rows read for 16"
