"""Numeric edges and odd strings: every integer field at its bounds runs, one past them is
refused by the API server naming the field; strings the database cannot hold end Failed with
the reason; the CLI refuses what the database would, in one line."""

from __future__ import annotations

from typing import Any

import pytest

from pgjobs.store import validation
from tests.abuse.helpers import Fleet, settle, try_create, wait_failed
from tests.e2e.operator_helpers import Services, pgjob, wait_phase
from tests.processes import pgjobs as pgjobs_command

pytestmark = pytest.mark.e2e

#: Values at a bound that a job still finishes with in the test's time.
RUNNABLE_BOUNDS = {
    "maxAttempts": (1, 100),
    "backoffSeconds": (0,),  # the high bound runs too, but waits a day between attempts
    "timeoutSeconds": (1, validation.TIMEOUT_SECONDS.high),
    "ttlSecondsAfterFinished": (validation.TTL_SECONDS_AFTER_FINISHED.high,),
    "restarts": (0, validation.RESTARTS.high),
}


@pytest.fixture
def fleet(services: Services) -> Fleet:
    return Fleet(services)


def test_integers_at_their_bounds_run_and_past_them_are_refused(
    kube: Any, namespace: str, fleet: Fleet
) -> None:
    for bounds in validation.RANGES:
        for value in RUNNABLE_BOUNDS[bounds.spec_field]:
            name = f"{bounds.spec_field.lower()}-{value}"
            assert try_create(kube, namespace, pgjob(name, "noop", **{bounds.spec_field: value})) is None
            wait_phase(kube, namespace, name, "Completed", timeout=60)
        for value in (bounds.low - 1, bounds.high + 1, 2**63 - 1):
            refusal = try_create(kube, namespace, pgjob("past", "noop", **{bounds.spec_field: value}))
            assert refusal is not None and f"spec.{bounds.spec_field}" in refusal, (bounds, value)
    settle()
    fleet.check(kube, namespace)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"text": "a\u0000b"}, "NUL character"),
        ({"a\u0000": 1}, "NUL character"),
        ({"blob": "\u00e9" * 40_000}, "over the limit of"),  # 80 KB in UTF-8, 40,000 characters
    ],
)
def test_args_the_database_cannot_hold_fail_the_pgjob(
    kube: Any, namespace: str, fleet: Fleet, args: dict[str, Any], reason: str
) -> None:
    assert try_create(kube, namespace, pgjob("odd", "noop", args=args)) is None
    wait_failed(kube, namespace, "odd", "invalid PgJob", reason)
    settle()
    fleet.check(kube, namespace)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["enqueue", "--", "noop\n"], "is not a valid task name"),
        (["enqueue", "--queue=default\n", "noop"], "is not a valid queue name"),
        (["enqueue", "--max-attempts=2147483648", "noop"], "max_attempts must be a whole number"),
        (["enqueue", "--timeout=-1", "noop"], "timeout_seconds must be a whole number"),
    ],
)
def test_the_cli_refuses_what_the_database_would_in_one_line(
    database_env: dict[str, str], argv: list[str], reason: str
) -> None:
    result = pgjobs_command(database_env, *argv)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("pgjobs: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert reason in result.stderr
