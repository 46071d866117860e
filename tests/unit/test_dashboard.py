"""The Grafana dashboard only queries metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

import pgjobs.operator.metrics
import pgjobs.worker.metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "pgjobs-dashboard.json"

# The series a metric of each type exposes, besides its own name.
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exported_names() -> set[str]:
    names: set[str] = set()
    for module in (pgjobs.worker.metrics, pgjobs.operator.metrics):
        for value in vars(module).values():
            if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
                for family in value.describe():
                    names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        if isinstance(node.get("query"), dict) and isinstance(node["query"].get("query"), str):
            found.append(node["query"]["query"])
        return found + [expr for value in node.values() for expr in expressions(value)]
    if isinstance(node, list):
        return [expr for value in node for expr in expressions(value)]
    return []


@pytest.fixture(scope="module")
def dashboard() -> Any:
    return json.loads(DASHBOARD.read_text())


def test_exported_names_are_found() -> None:
    names = exported_names()
    assert "pgjobs_jobs" in names
    assert "pgjobs_worker_jobs_total" in names
    assert "pgjobs_operator_status_sync_lag_seconds_bucket" in names


def test_every_metric_in_the_dashboard_is_exported(dashboard: Any) -> None:
    used = {name for expr in expressions(dashboard) for name in re.findall(r"\bpgjobs_[a-z0-9_]+", expr)}
    assert len(used) >= 15
    assert used - exported_names() == set()


def test_dashboard_covers_what_operators_watch(dashboard: Any) -> None:
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in (
        "queue depth",
        "priority",
        "throughput",
        "pickup latency",
        "run time",
        "workers alive",
        "sync lag",
        "rescued",
        "errors",
    ):
        assert topic in titles, topic
    quantiles = [expr for expr in expressions(dashboard) if "pickup_latency" in expr]
    assert any("histogram_quantile(0.99" in expr for expr in quantiles)


def test_panels_have_unique_ids_and_a_datasource_variable(dashboard: Any) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables


def test_every_panel_says_what_it_shows(dashboard: Any) -> None:
    undescribed = [p["title"] for p in dashboard["panels"] if p["type"] != "row" and not p.get("description")]
    assert undescribed == []


def test_the_queue_filter_reaches_every_series_that_has_a_queue(dashboard: Any) -> None:
    """pgjobs_jobs and the operator's latency histograms carry `queue`: their panels follow $queue."""
    queued = (
        "pgjobs_jobs{",
        "pgjobs_operator_pickup_latency_seconds_bucket{",
        "pgjobs_operator_run_time_seconds_bucket{",
    )
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for series in queued:
                for selector in target["expr"].split(series)[1:]:
                    assert 'queue=~"$queue"' in selector.split("}")[0], (panel["title"], target["expr"])
