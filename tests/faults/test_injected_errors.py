"""Database errors injected by SQLSTATE class at every write the worker and the operator make.

A statement-level trigger on pgjobs.jobs and pgjobs.workers raises the SQLSTATE named in a
one-row table for as long as the row is there, so each write statement (claim, heartbeat,
progress, completion, registration; the operator's upsert, status bookkeeping and leadership)
meets the real error from the real server through the real driver. An outage class must be
retried (one WARNING, the job done once, the process alive); a permanent one must end the worker
with one ERROR line and exit 1 so the kubelet restarts it, and fail nothing for good that a
retry would have saved.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pgjobs.states import JobState
from pgjobs.store import connecting
from tests.e2e.operator_helpers import Services, create, events, get, sleep_job, status, wait_phase
from tests.processes import Database, Ledger, WorkerProcess, wait_for

pytestmark = pytest.mark.integration

INSTALL = """
CREATE TABLE public.injected_error (sqlstate text NOT NULL);
CREATE FUNCTION public.inject_error() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    state text := (SELECT sqlstate FROM public.injected_error LIMIT 1);
BEGIN
    IF state IS NOT NULL THEN
        RAISE EXCEPTION 'injected error % on %', state, TG_TABLE_NAME USING ERRCODE = state;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER inject_error BEFORE INSERT OR UPDATE OR DELETE ON pgjobs.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION public.inject_error();
CREATE TRIGGER inject_error BEFORE INSERT OR UPDATE OR DELETE ON pgjobs.workers
    FOR EACH STATEMENT EXECUTE FUNCTION public.inject_error();
"""

#: One SQLSTATE per kind of outage `pgjobs.store.connecting.is_outage` retries: a connection
#: failure, a server shutting down, a read-only server, a serialization failure, a deadlock,
#: too many connections, a pooler's statement confusion.
OUTAGES = ["08006", "57P01", "25006", "40001", "40P01", "53300", "26000"]
#: Shorter than the stall timeout the workers run with: the job is not handed over meanwhile.
INJECTED_FOR = 2.0
STALL_TIMEOUT = "6"


class Injector:
    def __init__(self, database: connecting.DatabaseSettings) -> None:
        self.database = Database(database)
        self.database.call(lambda conn: conn.execute(INSTALL))

    def start(self, sqlstate: str) -> None:
        self.database.call(
            lambda conn: conn.execute("INSERT INTO public.injected_error VALUES (%s)", [sqlstate])
        )

    def stop(self) -> None:
        self.database.call(lambda conn: conn.execute("DELETE FROM public.injected_error"))


@pytest.fixture
def injector(database: connecting.DatabaseSettings) -> Injector:
    return Injector(database)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.mark.parametrize("sqlstate", OUTAGES)
def test_a_worker_rides_out_every_kind_of_outage(
    sqlstate: str,
    database: connecting.DatabaseSettings,
    database_env: dict[str, str],
    ledger: Ledger,
    injector: Injector,
) -> None:
    db = Database(database)
    [job_id] = db.enqueue("record", 1, args={"seconds": 1.0}, max_attempts=1)
    worker = WorkerProcess(database_env, ledger, ("--stall-timeout", STALL_TIMEOUT))
    try:
        wait_for(lambda: db.job(job_id).state is JobState.RUNNING, 30, what="the job to run")
        injector.start(sqlstate)
        time.sleep(INJECTED_FOR)
        injector.stop()
        wait_for(lambda: db.job(job_id).state is JobState.COMPLETED, 30, interval=0.2, what="the job done")
        # A second job after the outage: claims work again.
        [after] = db.enqueue("record", 1)
        wait_for(lambda: db.job(after).state is JobState.COMPLETED, 30, interval=0.2, what="a job after it")
        assert worker.process.poll() is None, worker.output()
    finally:
        worker.stop()
    output = worker.output()
    assert ledger.count("done")[job_id] == 1, output
    assert "Traceback" not in output and " ERROR " not in output, output
    # Said once per outage and link, with its SQLSTATE (a pooler's error: once per process).
    warnings = [line for line in output.splitlines() if " WARNING " in line]
    assert warnings and all(sqlstate in line for line in warnings), output
    said = [line.split("pgjobs.worker.links: ")[-1].split(":")[0] for line in warnings]
    assert len(said) == len(set(said)), output


def test_a_permanent_error_ends_the_worker_with_one_line(
    database: connecting.DatabaseSettings, database_env: dict[str, str], ledger: Ledger, injector: Injector
) -> None:
    """Also while a job runs: handing it back on the way out meets the error again, which is
    no second line."""
    db = Database(database)
    [job_id] = db.enqueue("record", 1, args={"seconds": 5.0})
    worker = WorkerProcess(database_env, ledger, ("--stall-timeout", STALL_TIMEOUT))
    try:
        wait_for(lambda: db.job(job_id).state is JobState.RUNNING, 30, what="the job to run")
        injector.start("42501")  # insufficient_privilege: a change of grants, not an outage
        assert worker.wait(timeout=20) == 1, worker.output()
    finally:
        injector.stop()
        worker.stop()
    # One line: logged by the loop that met it, or printed by the command when it was still
    # registering (a slow start).
    lines = worker.output().splitlines()
    errors = [line for line in lines if " ERROR " in line or line.startswith("pgjobs: error:")]
    assert len(errors) == 1 and "42501" in errors[0], worker.output()
    assert "Traceback" not in worker.output(), worker.output()


@pytest.mark.parametrize("sqlstate", ["25006", "40001", "53300"])
def test_the_operator_applies_a_pgjob_created_during_an_outage(
    sqlstate: str, kube: Any, namespace: str, services: Services, injector: Injector
) -> None:
    services.operator()
    services.worker()
    create(kube, namespace, sleep_job("warm-up", seconds=0.1, steps=1))
    wait_phase(kube, namespace, "warm-up", "Completed")
    injector.start(sqlstate)
    try:
        create(kube, namespace, sleep_job("during", seconds=0.1, steps=1))
        uid = get(kube, namespace, "during")["metadata"]["uid"]
        wait_for(
            lambda: any(e["reason"] == "DatabaseUnavailable" for e in events(kube, namespace, uid)),
            20,
            what="a DatabaseUnavailable Event",
        )
        time.sleep(INJECTED_FOR)
        assert status(kube, namespace, "during").get("phase") != "Failed"
    finally:
        injector.stop()
    done = wait_phase(kube, namespace, "during", "Completed", timeout=40)
    assert done["attempts"] == 1


def test_the_operator_fails_a_pgjob_a_permanent_error_refuses_and_says_why(
    kube: Any, namespace: str, services: Services, injector: Injector
) -> None:
    operator = services.operator()
    injector.start("42501")
    try:
        create(kube, namespace, sleep_job("refused", seconds=0.1, steps=1))
        failed = wait_phase(kube, namespace, "refused", "Failed", timeout=40)
    finally:
        injector.stop()
    assert "InsufficientPrivilege" in failed["message"] and "injected error 42501" in failed["message"], (
        failed
    )
    assert operator.alive()
