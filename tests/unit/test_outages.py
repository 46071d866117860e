"""Which PgJobs an older operator failed for a database outage, and the outage Event's text."""

from __future__ import annotations

import psycopg
import pytest

from pgjobs.operator import outages

PREFIX = "invalid PgJob: the operator failed to apply it: "


def failed(message: str, **status: object) -> dict[str, object]:
    return {"status": {"phase": "Failed", "message": message, **status}}


@pytest.mark.parametrize(
    "error",
    [
        "ReadOnlySqlTransaction: cannot execute INSERT in a read-only transaction",
        "AdminShutdown: terminating connection due to administrator command",
        "OperationalError: connection failed: server closed the connection unexpectedly",
        "CannotConnectNow: the database system is starting up",
        "TooManyConnections: sorry, too many clients already",
        "DeadlockDetected: deadlock detected",
    ],
)
def test_outages_are_recognised(error: str) -> None:
    assert outages.failed_by_an_outage(failed(PREFIX + error))


@pytest.mark.parametrize(
    "body",
    [
        failed(PREFIX + 'UndefinedTable: relation "pgjobs.jobs" does not exist'),
        failed(PREFIX + "InsufficientPrivilege: permission denied for table jobs"),
        failed(PREFIX + "ValueError: bad value"),
        failed(PREFIX + "NoSuchThing: made up"),
        failed("invalid PgJob: spec.task must be a string"),
        failed("not allowed: queue 'x' is not one of this namespace's queues"),
        # It had a row: its run happened (or happens), nothing to pick up.
        failed(PREFIX + "ReadOnlySqlTransaction: cannot execute UPDATE", jobId=7),
        {"status": {"phase": "Pending", "message": PREFIX + "ReadOnlySqlTransaction: x"}},
        {},
    ],
)
def test_everything_else_is_not(body: dict[str, object]) -> None:
    assert not outages.failed_by_an_outage(body)


def test_the_event_names_the_sqlstate_and_says_nothing_is_needed() -> None:
    error = psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction\nmore")
    text = outages.unavailable_text(error)
    assert "SQLSTATE 25006" in text and "more" not in text and "applied once it can" in text


def test_only_loops_quiet_past_the_limit_are_stalled() -> None:
    from pgjobs.operator import liveness

    rounds = {liveness.STATUS_SYNC: 100.0, liveness.MAINTENANCE: 30.0}
    assert liveness.stalled_duties(rounds, now=120.0, limit=60.0) == ["maintenance (90s)"]
    assert liveness.stalled_duties(rounds, now=80.0, limit=60.0) == []
    assert liveness.stalled_duties({}, now=1e9, limit=60.0) == []
