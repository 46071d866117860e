"""Nesting depth: PgJob args and task results nested deep end Failed with the reason, and the
operator and the worker that read them are the same processes afterwards.

The API server takes JSON nested up to 10,000 deep, and `args` keeps unknown fields, so the CRD
cannot bound the depth: the operator must read whatever the API server serves and refuse it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pgjobs.operator import handlers
from pgjobs.store.records import MAX_JSON_DEPTH
from tests.abuse.helpers import Fleet, settle, try_create, wait_failed
from tests.abuse.hostile_tasks import nested
from tests.e2e.operator_helpers import Services, events, get, pgjob, wait_until
from tests.processes import pgjobs as pgjobs_command

pytestmark = pytest.mark.e2e

DEPTH_REASON = f"nested deeper than {MAX_JSON_DEPTH} levels"


@pytest.fixture
def fleet(services: Services) -> Iterator[Fleet]:
    # This process too sends and reads back (the Kubernetes client, json) what the operator must.
    limit = sys.getrecursionlimit()
    handlers.allow_api_server_depth()
    try:
        yield Fleet(services)
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize(
    ("depth", "container"),
    [(MAX_JSON_DEPTH + 1, "object"), (1_200, "object"), (1_200, "array"), (9_990, "object")],
)
def test_deep_args_fail_the_pgjob_not_the_operator(
    kube: Any, namespace: str, fleet: Fleet, depth: int, container: str
) -> None:
    name = f"deep-{depth}-{container}"
    refusal = try_create(kube, namespace, pgjob(name, "noop", args={"a": nested(depth - 1, container)}))
    if refusal is None:
        wait_failed(kube, namespace, name, "invalid PgJob", DEPTH_REASON)
        uid = get(kube, namespace, name)["metadata"]["uid"]
        wait_until(
            lambda: [e for e in events(kube, namespace, uid) if DEPTH_REASON in (e["message"] or "")],
            what="an Event with the reason",
        )
    else:
        assert "depth" in refusal, refusal
    settle()
    fleet.check(kube, namespace)


def test_args_as_deep_as_allowed_run(kube: Any, namespace: str, fleet: Fleet) -> None:
    create_args = {"a": nested(MAX_JSON_DEPTH - 2)}  # the object itself is the first level
    assert try_create(kube, namespace, pgjob("deepest-allowed", "record", args=create_args)) is None
    wait_until(lambda: get(kube, namespace, "deepest-allowed").get("status", {}).get("phase") == "Completed")


@pytest.mark.parametrize(
    ("task", "args", "reason"),
    [
        ("deep_result", {"depth": 2_000}, DEPTH_REASON),
        ("deep_result", {"depth": 2_000, "container": "array"}, DEPTH_REASON),
        ("looped_result", {}, DEPTH_REASON),
        ("big_result", {"size": 1_000_000}, "over the limit of"),
        ("deep_error", {"depth": 2_000}, "RuntimeError"),
    ],
)
def test_hostile_results_fail_the_job_not_the_worker(
    kube: Any, namespace: str, fleet: Fleet, task: str, args: dict[str, Any], reason: str
) -> None:
    name = task.replace("_", "-")
    assert try_create(kube, namespace, pgjob(name, task, args=args, maxAttempts=2)) is None
    wait_failed(kube, namespace, name, reason)
    settle()
    fleet.check(kube, namespace)


def test_enqueue_refuses_deep_args_in_one_line(database_env: dict[str, str]) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 5_000):
        text = '{"a":' * depth + "1" + "}" * depth
        result = pgjobs_command(database_env, "enqueue", f"--args={text}", "noop")
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.startswith("pgjobs: error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "nested deeper than" in result.stderr
