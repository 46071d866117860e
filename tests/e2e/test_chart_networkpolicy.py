"""The chart's NetworkPolicies, rendered by helm: they admit what the pods serve, and the dev
PostgreSQL only from this release's operator and workers.

The single-node cluster's bridge CNI does not enforce NetworkPolicy, so enforcement itself is
not tested here; the API server accepts the objects in test_chart's server-side dry run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.chart_helpers import render

Obj = dict[str, Any]
EVERYTHING = {"postgresql": {"enabled": True}, "worker": {"hpa": {"enabled": True}}}


def pod_templates(objects: list[Obj]) -> list[Obj]:
    kinds = {"Deployment", "StatefulSet"}
    return [obj["spec"]["template"] for obj in objects if obj["kind"] in kinds]


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    matched = all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        matched = matched and labels.get(expression["key"]) in expression["values"]
    return matched


def policies(objects: list[Obj]) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == "NetworkPolicy"]


def test_every_pod_is_covered_and_every_port_named_is_served(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, EVERYTHING)
    templates = pod_templates(objects)
    for template in templates:
        labels = template["metadata"]["labels"]
        covering = [p for p in policies(objects) if selects(p["spec"]["podSelector"], labels)]
        assert len(covering) == 1, labels
        served = {port["name"] for c in template["spec"]["containers"] for port in c.get("ports", [])}
        named = {port["port"] for rule in covering[0]["spec"]["ingress"] for port in rule["ports"]}
        assert named <= served, (labels["app.kubernetes.io/component"], named - served)
    assert len(templates) == 3


def test_postgresql_admits_only_this_releases_operator_and_workers(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, EVERYTHING, release="mine")
    (database,) = [p for p in policies(objects) if p["metadata"]["name"].endswith("-postgresql")]
    (rule,) = database["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector: this namespace only
    admitted = [t["metadata"]["labels"]["app.kubernetes.io/component"] for t in pod_templates(objects)
                if selects(peer["podSelector"], t["metadata"]["labels"])]  # fmt: skip
    assert sorted(admitted) == ["operator", "worker"]
    theirs = {"app.kubernetes.io/instance": "theirs", "app.kubernetes.io/component": "worker"}
    assert not selects(peer["podSelector"], theirs)


def test_scrapers_can_be_narrowed_and_policies_turned_off(helm: Path, tmp_path: Path) -> None:
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    narrowed = render(helm, tmp_path, {"networkPolicy": {"metricsFrom": monitoring}})
    for policy in policies(narrowed):
        assert policy["spec"]["ingress"][0]["from"] == monitoring
    assert policies(render(helm, tmp_path, {"networkPolicy": {"enabled": False}})) == []
