"""The chart's operator.policy: rendered into a ConfigMap the operator reads at start, mounted,
named by --policy-file, rolled by a checksum; absent by default; checked by the values schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pgjobs.operator import policy
from tests.e2e.chart_helpers import CHART, Obj, render, run_helm, values_file

POLICY: Obj = {
    "contact": "the platform team (#platform)",
    "rules": [
        {"namespaces": ["reports", "reports-*"], "queues": ["reports"], "tasks": ["render-report"],
         "maxUnfinished": 200, "maxTimeoutSeconds": 3600, "maxAttempts": 5},
        {"namespaces": ["*"], "queues": ["default"], "tasks": ["sleep", "noop"]},
    ],
}  # fmt: skip


def operator_parts(objects: list[Obj]) -> tuple[Obj, Obj, Any]:
    (deployment,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pgjobs-operator"
    ]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    config_maps = [o for o in objects if o["kind"] == "ConfigMap"]
    return pod, container, config_maps


def test_no_policy_by_default(helm: Path, tmp_path: Path) -> None:
    pod, container, config_maps = operator_parts(render(helm, tmp_path, {}))
    assert config_maps == []
    assert not any(arg.startswith("--policy-file") for arg in container["args"])
    assert "checksum/policy" not in pod["metadata"]["annotations"]


def test_the_policy_is_mounted_read_at_start_and_rolls_the_operator(helm: Path, tmp_path: Path) -> None:
    pod, container, config_maps = operator_parts(render(helm, tmp_path, {"operator": {"policy": POLICY}}))
    (config_map,) = config_maps
    assert config_map["metadata"]["name"] == "pgjobs-operator-policy"
    # What the operator reads is what was asked for.
    rendered = config_map["data"]["policy.yaml"]
    assert policy.parse(yaml.safe_load(rendered)) == policy.parse(POLICY)
    assert "--policy-file=/etc/pgjobs/policy/policy.yaml" in container["args"]
    assert {"name": "policy", "mountPath": "/etc/pgjobs/policy", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "policy", "configMap": {"name": "pgjobs-operator-policy"}} in pod["spec"]["volumes"]
    checksum = pod["metadata"]["annotations"]["checksum/policy"]
    stricter = {**POLICY, "rules": [{**POLICY["rules"][0], "maxUnfinished": 100}, POLICY["rules"][1]]}
    pod, _, _ = operator_parts(render(helm, tmp_path, {"operator": {"policy": stricter}}))
    assert pod["metadata"]["annotations"]["checksum/policy"] != checksum
    result = run_helm(
        helm, "lint", "--strict", str(CHART), "-f", values_file(tmp_path, {"operator": {"policy": POLICY}})
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ({"rules": [{"queues": ["a"]}]}, "missing property 'namespaces'"),
        ({"rules": [{"namespaces": ["a"], "queue": ["a"]}]}, "additional properties 'queue' not allowed"),
        ({"rules": [{"namespaces": ["a"], "maxUnfinished": -1}]}, "/operator/policy/rules/0/maxUnfinished"),
        ({"rules": [{"namespaces": "a"}]}, "/operator/policy/rules/0/namespaces"),
        ({"contact": ""}, "/operator/policy/contact"),
    ],
    ids=["no-namespaces", "misspelled-key", "negative-limit", "not-a-list", "empty-contact"],
)
def test_the_schema_refuses_a_malformed_policy(helm: Path, tmp_path: Path, wrong: Obj, message: str) -> None:
    values = values_file(tmp_path, {"operator": {"policy": wrong}})
    result = run_helm(helm, "template", "pgjobs", str(CHART), "-f", values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
