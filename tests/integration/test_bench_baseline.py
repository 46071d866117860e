"""The benchmarks' raw-SQL baseline against a real server: pgbench runs the worker's own statement
and drains the queue, every job completed once (a baseline that did less would flatter pgjobs)."""

from __future__ import annotations

import pytest

from bench import environment, throughput
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store.records import NewJob

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("clients", [1, 3])
def test_pgbench_completes_every_job_exactly_once(postgres_server: PostgresServer, clients: int) -> None:
    database = environment.pgjobs_database(postgres_server, "test_pgbench")
    environment.enqueue(database, NewJob("noop"), 50)
    measured = throughput.drain_with_pgbench(database, 50, clients)
    assert measured["completed"] == 50 and measured["jobs_per_s"] > 0
    with database.connect() as conn:
        rows = conn.execute("SELECT state, attempt, count(*) AS n FROM pgjobs.jobs GROUP BY 1, 2").fetchall()
    assert [(row["state"], row["attempt"], row["n"]) for row in rows] == [("completed", 1, 50)]
