"""Numeric bounds agree between the CRD and the store's validation, and the operator's handler
ends an unexpected error in a Failed status after bounded retries instead of retrying for ever."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from pgjobs.operator import handlers
from pgjobs.store import validation
from pgjobs.store.records import InvalidJob, NewJob, ResourceJob

ROOT = Path(__file__).resolve().parents[2]


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "pgjobs.dev_pgjobs.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return schema


def test_every_integer_of_the_spec_has_the_store_bounds() -> None:
    integers = {name: field for name, field in spec_schema().items() if field.get("type") == "integer"}
    ranges = {bounds.spec_field: bounds for bounds in validation.RANGES}
    assert set(integers) == set(ranges)
    for name, field in integers.items():
        assert (field.get("minimum"), field.get("maximum")) == (ranges[name].low, ranges[name].high), name


@pytest.mark.parametrize("bounds", validation.RANGES, ids=lambda bounds: bounds.spec_field)
def test_a_pgjob_out_of_range_is_invalid(bounds: validation.Range) -> None:
    def resource(value: int) -> ResourceJob:
        body = {
            "metadata": {"uid": "u", "namespace": "ns", "name": "n"},
            "spec": {"task": "noop", bounds.spec_field: value},
        }
        return handlers.resource_job(body)

    for value in (bounds.low, bounds.high):
        validation.check_resource_job(resource(value))
    for value in (bounds.low - 1, bounds.high + 1, 2**63):
        with pytest.raises(InvalidJob, match=f"{bounds.attribute} must be a whole number"):
            validation.check_resource_job(resource(value))


@pytest.mark.parametrize("task", ["noop\n", "noop\r", "\nnoop"])
def test_a_task_name_with_a_newline_is_invalid(task: str) -> None:
    with pytest.raises(InvalidJob, match="not a valid task name"):
        validation.check_new_job(NewJob(task))
    with pytest.raises(InvalidJob, match="not a valid queue name"):
        validation.check_new_job(NewJob("noop", queue="default\n"))


class FakeKube:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any], uid: Any = None) -> bool:
        self.statuses.append(status)
        return True

    async def post_event(self, involved: Any, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))


def test_an_unexpected_error_is_retried_a_few_times_then_fails_the_pgjob(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(ctx: Any, body: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(handlers, "apply_spec", broken)
    fake = FakeKube()
    memo = kopf.Memo(context=type("Ctx", (), {"kube": fake})())
    body = {"metadata": {"uid": "u", "namespace": "ns", "name": "n"}, "spec": {"task": "noop"}}
    for retry in range(handlers.UNEXPECTED_ERROR_RETRIES):
        with pytest.raises(kopf.TemporaryError):
            asyncio.run(handlers.reconcile(body=body, memo=memo, retry=retry))
    assert fake.statuses == []
    with pytest.raises(kopf.PermanentError):
        asyncio.run(handlers.reconcile(body=body, memo=memo, retry=handlers.UNEXPECTED_ERROR_RETRIES))
    [status] = fake.statuses
    assert status["phase"] == "Failed" and "KeyError: 'a bug'" in status["message"]
    [(kind, reason, message)] = fake.events
    assert (kind, reason) == ("Warning", handlers.REFUSED_REASON) and "KeyError" in message


def test_an_outage_is_retried_for_as_long_as_it_lasts(monkeypatch: pytest.MonkeyPatch) -> None:
    async def away(ctx: Any, body: Any) -> None:
        raise TimeoutError("the database is away")

    monkeypatch.setattr(handlers, "apply_spec", away)
    memo = kopf.Memo(context=type("Ctx", (), {"kube": FakeKube()})())
    body = {"metadata": {"uid": "u", "namespace": "ns", "name": "n"}, "spec": {"task": "noop"}}
    # Retried by kopf as a TemporaryError: one line per try, where another exception costs a
    # traceback per try; never given up, whatever the number of tries.
    with pytest.raises(kopf.TemporaryError, match="the database is away"):
        asyncio.run(handlers.reconcile(body=body, memo=memo, retry=100))
