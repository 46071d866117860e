"""Queue throughput: N noop jobs drained by k single-slot workers, pgbench and Procrastinate.

Every system is measured the same way, from the database's own timestamps: jobs completed
divided by (last finish - first start). Process start-up is left out for everyone; the wall
time from the first process start to the last exit is recorded too.
"""

from __future__ import annotations

import asyncio
import re
import resource
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import baseline, environment
from pgjobs.devenv.postgres import PostgresServer
from pgjobs.store import connecting, jobs, queries
from pgjobs.store.records import NewJob

QUERIES_FILE = Path(queries.__file__).with_name("queries.sql")


def _drain_rate(database: environment.Database, table_query: str) -> dict[str, float]:
    with database.connect() as conn:
        row = conn.execute(table_query).fetchone()
    assert row is not None
    done = int(row["done"] or 0)
    span = float(row["span"] or 0.0)
    return {"completed": done, "span_s": span, "jobs_per_s": done / span if span > 0 else 0.0}


PGJOBS_SPAN = """
SELECT count(*) AS done, extract(epoch FROM max(finished_at) - min(started_at))::float8 AS span
FROM pgjobs.jobs WHERE state = 'completed'
"""


def run_pgjobs(server: PostgresServer, jobs_count: int, workers: int, slots: int = 1) -> dict[str, Any]:
    """`workers` burst worker processes of `slots` slots each."""
    database = environment.pgjobs_database(server, f"tp_pgjobs_{workers}")
    environment.enqueue(database, NewJob("noop"), jobs_count)
    started = time.perf_counter()
    processes = environment.start_workers(database, workers, ["--burst", "--concurrency", str(slots)])
    codes, cpu = environment.wait_with_cpu(processes)
    wall = time.perf_counter() - started
    result = _drain_rate(database, PGJOBS_SPAN)
    result |= {"wall_s": wall, "exit_codes": codes, "worker_cpu_s": cpu}
    result["worker_cpu_us_per_job"] = 1e6 * cpu / max(1, result["completed"])
    return result


def run_store_loop(server: PostgresServer, jobs_count: int) -> dict[str, Any]:
    """The Python floor: one asyncio loop calling `jobs.claim` then `jobs.complete_and_claim`
    (psycopg, one connection, no worker around it): what any single-slot worker built on the
    store can reach at most."""
    database = environment.pgjobs_database(server, "tp_store_loop")
    environment.enqueue(database, NewJob("noop"), jobs_count)

    async def drain() -> float:
        conn = await connecting.connect(connecting.DatabaseSettings(url=database.url))
        worker_id = uuid.uuid4()
        before = resource.getrusage(resource.RUSAGE_SELF)
        async with conn:
            job = await jobs.claim(conn, worker_id, ["default"])
            while job is not None:
                job = (await jobs.complete_and_claim(conn, job, None, None, worker_id, ["default"])).job
        after = resource.getrusage(resource.RUSAGE_SELF)
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    cpu = asyncio.run(drain())
    result = _drain_rate(database, PGJOBS_SPAN)
    result["client_cpu_us_per_job"] = 1e6 * cpu / max(1, result["completed"])
    return result


def startup_cpu(server: PostgresServer) -> float:
    """CPU seconds of a `--burst` worker that finds nothing to do: start-up and exit, per process."""
    database = environment.pgjobs_database(server, "tp_pgjobs_empty")
    _, cpu = environment.wait_with_cpu(environment.start_workers(database, 1, ["--burst"]))
    return cpu


# pgbench: the worker's own hot-path statement, taken from queries.sql.


def pgbench_script() -> str:
    """`job_complete_and_claim` with pgbench variables; each transaction completes the job the
    previous one claimed (none at first: id 0) and claims the next, as a draining worker does.

    A client whose claim found nothing is done: the queue is drained (an empty claim means every
    pending row was taken), and its remaining transactions run no SQL (`drained`)."""
    statement = queries.parse(QUERIES_FILE.read_text())["job_complete_and_claim"]
    statement = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))
    substitutions = {
        "job_id": ":next_id",
        "lease": ":next_lease",
        "worker_id": ":worker_id",
        "queues": ":queues",
        # The worker's tasks, as a worker with the builtins sends them.
        "tasks": "'{noop}'",
        # A draining worker's slot is busy, never counted idle.
        "was_idle": "false",
        # A noop job completes with result NULL and message NULL, as in the worker.
        "result": "NULL",
        "message": "NULL",
    }
    for name, value in substitutions.items():
        statement = statement.replace(f"%({name})s", value)
    if "%(" in statement:
        raise RuntimeError(f"unsubstituted parameter in job_complete_and_claim:\n{statement}")
    # Carry the claimed job to the next transaction; 0 when nothing was claimed.
    statement, found = re.subn(
        r"claimed\.\*(,?)\s*\n",
        "claimed.*, coalesce(claimed.id, 0) AS next_id, coalesce(claimed.lease, 0) AS next_lease,"
        " (claimed.id IS NULL)::int AS drained\\1\n",
        statement,
        count=1,
    )
    if not found:
        raise RuntimeError("job_complete_and_claim changed shape: cannot find its final SELECT")
    return "\\if :drained = 0\n" + statement.replace("%%", "%") + "\n\\gset\n\\endif\n"


def run_pgbench(server: PostgresServer, jobs_count: int, clients: int) -> dict[str, Any]:
    database = environment.pgjobs_database(server, f"tp_pgbench_{clients}")
    environment.enqueue(database, NewJob("noop"), jobs_count)
    return drain_with_pgbench(database, jobs_count, clients)


def drain_with_pgbench(database: environment.Database, jobs_count: int, clients: int) -> dict[str, Any]:
    """Drain `jobs_count` pending noop jobs with pgbench's `clients`; rate from the rows."""
    server = database.server
    # The server's own pgbench: the same version, and no pg_wrapper choosing among clusters.
    pgbench = str(server.bindir / "pgbench")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(pgbench_script())
    # One claim per transaction, and a client may get any share of the jobs: n + 1 transactions
    # each, so that every client's last claim finds nothing and no job is left claimed but not
    # completed. Once drained, a client's transactions run no SQL; the rate counts from the rows.
    per_client = jobs_count + 1
    command = [
        pgbench,
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(clients),
        "-t",
        str(per_client),
        "-f",
        script.name,
        "-D",
        f"worker_id={uuid.uuid4()}",
        "-D",
        "queues={default}",
        "-D",
        "next_id=0",
        "-D",
        "next_lease=0",
        "-D",
        "drained=0",
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "pgjobs",
        database.name,
    ]
    env = {**database.worker_env(), "PGPASSWORD": server.password}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    Path(script.name).unlink()
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    result = _drain_rate(database, PGJOBS_SPAN)
    result |= {"wall_s": wall, "pgbench_tps": float(tps.group(1)) if tps else None}
    return result


# Procrastinate, from its own virtualenv.

#: Run by the baseline venv's python with the job count as argument (Procrastinate wants its
#: app in an importable module, not in __main__).
PROCRASTINATE_SETUP = (
    "import asyncio, sys; from bench import procrastinate_app as p; asyncio.run(p.setup(int(sys.argv[1])))"
)

PROCRASTINATE_SPAN = """
SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded') AS done,
       extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')
                        - min(at) FILTER (WHERE type = 'started'))::float8 AS span
FROM procrastinate_events
"""


def run_procrastinate(server: PostgresServer, jobs_count: int, workers: int) -> dict[str, Any]:
    python = baseline.python()
    database = environment.fresh_database(server, f"tp_procrastinate_{workers}")
    env = baseline.procrastinate_env(database)
    subprocess.run(
        [python, "-c", PROCRASTINATE_SETUP, str(jobs_count)], env=env, check=True, cwd=environment.REPO
    )
    with database.connect() as conn:
        conn.execute("VACUUM ANALYZE")
    command = [
        python,
        "-m",
        "procrastinate",
        "--app=bench.procrastinate_app.app",
        "--log-level=warning",
        "worker",
        "--concurrency=1",
        "--one-shot",
    ]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, env=env | {"PROCRASTINATE_WORKER_WAIT": "0"}, cwd=environment.REPO)
        for _ in range(workers)
    ]
    codes, cpu = environment.wait_with_cpu(processes)
    wall = time.perf_counter() - started
    result = _drain_rate(database, PROCRASTINATE_SPAN)
    result |= {"wall_s": wall, "exit_codes": codes, "worker_cpu_s": cpu}
    result["worker_cpu_us_per_job"] = 1e6 * cpu / max(1, result["completed"])
    return result
