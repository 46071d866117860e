"""Which database errors are outages (retried, never a bad job) and which get one line of advice."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs.operator.handlers import run_is_over
from pgjobs.store import connecting


@pytest.mark.parametrize(
    "error",
    [
        errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only transaction"),
        errors.AdminShutdown("terminating connection due to administrator command"),
        errors.CannotConnectNow("the database system is starting up"),
        errors.SerializationFailure("could not serialize access"),
        errors.DeadlockDetected("deadlock detected"),
        errors.TooManyConnections("sorry, too many clients already"),
        errors.DiskFull("could not extend file"),
        errors.DuplicatePreparedStatement("prepared statement already exists"),
        errors.InvalidSqlStatementName("prepared statement does not exist"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        connecting.DatabaseError("cannot reach PostgreSQL"),
    ],
)
def test_outages(error: Exception) -> None:
    assert connecting.is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.UniqueViolation("duplicate key"),
        errors.NumericValueOutOfRange("integer out of range"),
        errors.InsufficientPrivilege("permission denied for table jobs"),
        ValueError("not a database error"),
    ],
)
def test_not_outages(error: Exception) -> None:
    assert not connecting.is_outage(error)


def test_advice_for_a_read_only_server_and_a_missing_privilege() -> None:
    read_only = connecting.advice_for(errors.ReadOnlySqlTransaction("cannot execute CREATE SCHEMA"))
    assert "primary" in read_only and "\n" not in read_only
    privilege = connecting.advice_for(errors.InsufficientPrivilege("permission denied for schema pgjobs"))
    assert "pgjobs migrate" in privilege
    unknown = connecting.advice_for(errors.UniqueViolation("duplicate key"))
    assert unknown == "PostgreSQL error 23505: duplicate key"


def pgjob(phase: str | None, job_id: int | None, restarts: int = 0, seen: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"restarts": seen}
    if phase:
        status["phase"] = phase
    if job_id is not None:
        status["jobId"] = job_id
    return {"spec": {"task": "sleep", "restarts": restarts}, "status": status}


@pytest.mark.parametrize(
    ("body", "over"),
    [
        (pgjob("Completed", 7), True),
        (pgjob("Failed", 7), True),
        (pgjob("Stopped", 7), False),  # waits for a start, which must be able to run it
        (pgjob("Completed", 7, restarts=1), False),  # a restart asks for a new run
        (pgjob("Failed", None), False),  # refused before it had a row
        (pgjob("Running", 7), False),
        (pgjob(None, None), False),
    ],
)
def test_a_run_is_over_when_the_status_records_a_finished_row(body: dict[str, Any], over: bool) -> None:
    assert run_is_over(body) is over
