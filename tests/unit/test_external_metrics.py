"""The external metrics API the worker HPA reads (pgjobs.operator.externalmetrics), over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pgjobs.operator import externalmetrics

BASE = "/apis/external.metrics.k8s.io/v1beta1"


class FixedBacklog(externalmetrics.Backlog):
    def __init__(self, counts: dict[str, int]) -> None:
        self.fixed = counts

    async def counts(self) -> dict[str, int]:
        return self.fixed


async def _get(path: str, counts: dict[str, int]) -> tuple[int, Any]:
    async with TestClient(TestServer(externalmetrics.application(FixedBacklog(counts)))) as client:
        response = await client.get(path)
        return response.status, await response.json()


def test_discovery_lists_the_one_metric() -> None:
    status, body = asyncio.run(_get(BASE, {}))
    assert status == 200
    assert [r["name"] for r in body["resources"]] == ["pgjobs_backlog"]
    assert body["groupVersion"] == "external.metrics.k8s.io/v1beta1"


@pytest.mark.parametrize(
    ("selector", "value", "labels"),
    [
        ("queue%3Ddefault", "7", {"queue": "default"}),
        ("queue+in+%28default%2Cio%29", "12", {"queue": "default,io"}),
        ("queue%3Dunknown", "0", {"queue": "unknown"}),
        ("", "13", {}),
    ],
    ids=["one-queue", "queue-in", "unknown-queue", "all-queues"],
)
def test_the_value_sums_the_selected_queues(selector: str, value: str, labels: dict[str, str]) -> None:
    path = f"{BASE}/namespaces/any/pgjobs_backlog?labelSelector={selector}"
    status, body = asyncio.run(_get(path, {"default": 7, "io": 5, "other": 1}))
    assert status == 200
    (item,) = body["items"]
    assert (item["metricName"], item["value"], item["metricLabels"]) == ("pgjobs_backlog", value, labels)


def test_other_metrics_and_selectors_are_refused_with_a_status() -> None:
    status, body = asyncio.run(_get(f"{BASE}/namespaces/a/pgjobs_jobs", {}))
    assert status == 404 and body["kind"] == "Status" and "pgjobs_backlog" in body["message"]
    status, body = asyncio.run(_get(f"{BASE}/namespaces/a/pgjobs_backlog?labelSelector=phase%3DPending", {}))
    assert status == 400 and "queue=NAME" in body["message"]
