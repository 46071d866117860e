"""Bad input at volume through Kubernetes: random PgJob specs thrown at the real API server.

With an operator and a worker running, each random spec is either refused by the API server with
a message naming every bad field (`spec.<field>`), or accepted and then reaches a terminal phase
(Completed, Failed with a status message, or Stopped when it asked to be stopped), or, for a task
no worker has, stays Pending with the condition Runnable=False (NoWorkerForTask). The operator
and the worker never crash: still alive at the end, no traceback in their logs.

Valid values are drawn only where the job finishes within the test's time: a valid one-day
backoff or an unserved queue keep a job visibly Pending, which is right but not terminal.
"""

from __future__ import annotations

import collections
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.e2e.operator_helpers import GROUP, PLURAL, VERSION, Recorder, Services, query, wait_until
from tests.processes import ROOT

pytestmark = pytest.mark.e2e

TASK_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
QUEUE_RE = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?")
QUEUES = ("default", "q1")  # the worker serves these
SOAK = os.environ.get("PGJOBS_SOAK") == "1"
TERMINAL = {"Completed", "Failed", "Stopped"}

Json = dict[str, Any]


@dataclass(frozen=True)
class Field:
    """A spec field's value, and whether the API server must accept it."""

    value: Any
    valid: bool

    def __repr__(self) -> str:
        text = repr(self.value)
        shown = text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"
        return f"Field({shown}, {'valid' if self.valid else 'invalid'})"


def valid(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Field]:
    return strategy.map(lambda value: Field(value, True))


def invalid(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Field]:
    return strategy.map(lambda value: Field(value, False))


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
odd_keys = st.sampled_from(["", " ", "a.b", "$ref", "__proto__", "ключ", "x" * 300, "0", "-"]) | st.text(
    max_size=10
)
#: null is no wrong type: the API server prunes a null field, as if it were not set.
wrong_types = st.sampled_from([True, 1, 1.5, "text", [1], {"a": 1}])

tasks = st.one_of(
    valid(st.sampled_from(["noop", "record", "sleep", "flaky"])),
    valid(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.:-]{0,20}\Z")),  # unknown: Runnable=False
    invalid(st.text(max_size=20).filter(lambda text: not TASK_RE.fullmatch(text))),
    invalid(st.just("t" * 129)),
    invalid(wrong_types.filter(lambda value: not isinstance(value, str))),
)
args = st.one_of(
    valid(st.dictionaries(odd_keys, json_values, max_size=5)),
    valid(st.fixed_dictionaries({"seconds": st.floats(-1, 0.3) | st.text(max_size=3) | st.none()})),
    valid(st.fixed_dictionaries({"seconds": st.floats(0, 0.3), "steps": st.integers(-2, 4)})),
    valid(st.just({"big": "x" * 70_000})),  # over the operator's 64 KiB: Failed with a message
    invalid(st.dictionaries(st.text(min_size=1, max_size=6), st.none(), min_size=65, max_size=70)),
    invalid(wrong_types.filter(lambda value: not isinstance(value, dict))),
)
priorities = st.one_of(
    valid(st.sampled_from(["High", "Regular", "Low"])),
    invalid(st.text(max_size=10).filter(lambda text: text not in ("High", "Regular", "Low"))),
    invalid(st.integers() | st.booleans()),
)
queues = st.one_of(
    valid(st.sampled_from(QUEUES)),
    invalid(st.text(max_size=70).filter(lambda text: not QUEUE_RE.fullmatch(text))),
    invalid(st.integers()),
)


def bounded(low: int, high: int | None, ok: st.SearchStrategy[int]) -> st.SearchStrategy[Field]:
    """An integer field: `ok` values, or out of [low, high] (negatives, huge), or no integer at all."""
    wrong = [
        invalid(st.integers(max_value=low - 1) | st.sampled_from([-(2**63)])),
        invalid(st.sampled_from(["1", 1.5, True, [1]])),
    ]
    if high is not None:
        wrong.append(invalid(st.integers(min_value=high + 1, max_value=2**63 - 1) | st.just(10**20)))
    return st.one_of(valid(ok), *wrong)


optional_fields = {
    "maxAttempts": bounded(1, 100, st.sampled_from([1, 2, 3, 100])),
    "backoffSeconds": bounded(0, 86400, st.just(0)),
    "timeoutSeconds": bounded(1, 604800, st.sampled_from([1, 60, 604800])),
    "ttlSecondsAfterFinished": bounded(0, 31536000, st.sampled_from([0, 1, 3600, 31536000])),
    "restarts": bounded(0, None, st.sampled_from([0, 5])),
    "stopped": st.one_of(valid(st.booleans()), invalid(st.sampled_from(["true", 0, 1]))),
    "priority": priorities,
    "queue": queues,
    "args": args,
}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Field]:
    chosen = draw(st.sets(st.sampled_from(sorted(optional_fields)), max_size=len(optional_fields)))
    spec = {"task": draw(tasks)}
    spec |= {name: draw(optional_fields[name]) for name in sorted(chosen)}
    if draw(st.booleans()):
        spec["unknownField"] = Field(draw(json_values), True)  # pruned by the structural schema
    return spec


def api_error(error: kubernetes.client.exceptions.ApiException) -> str:
    return f"{error.status} {error.body}"


def terminal_version(recorder: Recorder, uid: str) -> Json | None:
    """The version that ends the PgJob's run here: a terminal phase, or Pending with no worker
    able to run its task (it waits, visibly, for one that can)."""
    for obj in reversed(recorder.seen):
        status = obj.get("status") or {}
        if obj["metadata"]["uid"] == uid and (status.get("phase") in TERMINAL or no_worker(status)):
            return obj
    return None


def no_worker(status: Json) -> bool:
    return status.get("phase") == "Pending" and any(
        c.get("type") == "Runnable" and c.get("status") == "False" and c.get("reason") == "NoWorkerForTask"
        for c in status.get("conditions", [])
    )


@pytest.fixture
def running(services: Services) -> Services:
    services.env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PGJOBS_TEST_LEDGER="/dev/null")
    services.operator("operator", "--no-worker-after", "1")
    queues = [arg for queue in QUEUES for arg in ("--queue", queue)]
    services.worker("worker", "--tasks", "tests.sample_tasks", *queues)
    return services


def test_random_specs_are_refused_naming_the_field_or_run_to_an_end(
    kube: Any, namespace: str, running: Services, recorder: Recorder, database: Any
) -> None:
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(
        max_examples=300 if SOAK else 30,
        deadline=None,
        derandomize=not SOAK,  # the same 30 specs in CI; fresh random ones in the soak
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    # One of each outcome for certain: the 30 derandomized specs change with this function's code.
    @example(spec={"task": Field("t" * 129, False)})
    @example(spec={"task": Field("noop", True)})
    @example(spec={"task": Field("noop", True), "args": Field({"big": "x" * 70_000}, True)})
    @example(spec={"task": Field("no_worker_has_this", True)})
    @given(spec=specs())
    def throw(spec: dict[str, Field]) -> None:
        name = f"bad-{time.monotonic_ns()}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PgJob",
            "metadata": {"name": name},
            "spec": {key: field.value for key, field in spec.items()},
        }
        bad = sorted(key for key, field in spec.items() if not field.valid)
        try:
            created = kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        except kubernetes.client.exceptions.ApiException as error:
            assert bad, f"a valid spec was refused: {api_error(error)}"
            assert error.status in (400, 422), api_error(error)
            for key in bad:
                assert f"spec.{key}" in str(error.body), f"spec.{key} not named: {api_error(error)}"
            outcomes["refused"] += 1
            return
        assert not bad, f"fields {bad} were accepted: {body['spec']}"
        uid = created["metadata"]["uid"]
        final = wait_until(lambda: terminal_version(recorder, uid), timeout=60, what=f"{name} terminal")
        status = final["status"]
        if no_worker(status):
            able = "SELECT 1 FROM pgjobs.workers WHERE state = 'alive' AND %s = ANY(tasks)"
            assert query(database, able, spec["task"].value) == [], f"a worker has the task: {status}"
            outcomes["NoWorkerForTask"] += 1
            status = {**status, "phase": "NoWorkerForTask"}
        elif status["phase"] == "Failed":
            assert status.get("message"), status
        elif status["phase"] == "Stopped":
            assert spec.get("stopped", Field(False, True)).value is True, status
        outcomes[status["phase"]] += 1
        for process in running.processes:
            assert process.alive(), f"{process.name} exited:\n{process.text()[-3000:]}"
        # Deleting it removes its row too (the operator's finalizer), whatever its ttl did.
        kube.kubectl("delete", "pgjob", name, "-n", namespace, "--ignore-not-found", "--timeout=20s")
        assert query(database, "SELECT 1 FROM pgjobs.jobs WHERE resource_uid = %s", uid) == []

    throw()
    print(f"outcomes: {dict(outcomes)}")
    assert all(outcomes[kind] for kind in ("refused", "Completed", "Failed", "NoWorkerForTask")), outcomes
    for process in running.processes:
        assert process.alive(), f"{process.name} exited:\n{process.text()[-3000:]}"
        assert "Traceback" not in process.text(), f"{process.name} logged a traceback"


def test_ttl_zero_jobs_show_their_outcome_before_deletion(
    kube: Any, namespace: str, services: Services, recorder: Recorder
) -> None:
    """ttlSecondsAfterFinished: 0 is valid; each PgJob must still show Completed/Failed before it goes.

    A small status write budget makes the sync lag behind as it does under load.
    """
    services.env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PGJOBS_TEST_LEDGER="/dev/null")
    services.operator("operator", "--status-writes-per-second", "2")
    services.worker("worker", "--tasks", "tests.sample_tasks")
    bodies = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PgJob",
            "metadata": {"name": f"ttl0-{i}"},
            # every other one fails: its only attempt raises
            "spec": {"task": "noop", "ttlSecondsAfterFinished": 0}
            if i % 2
            else {"task": "flaky", "maxAttempts": 1, "ttlSecondsAfterFinished": 0},
        }
        for i in range(20)
    ]
    uids = [
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)["metadata"][
            "uid"
        ]
        for body in bodies
    ]
    wait_until(
        lambda: not kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"],
        timeout=60,
        what="every ttl-0 PgJob deleted",
    )
    time.sleep(1)  # the recorder's watch delivers the last versions
    unseen = [body["metadata"]["name"] for body, uid in zip(bodies, uids, strict=True)
              if terminal_version(recorder, uid) is None]  # fmt: skip
    assert not unseen, f"deleted without ever showing a terminal phase: {unseen}"
