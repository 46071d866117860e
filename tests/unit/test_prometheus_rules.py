"""The Prometheus rules (deploy/prometheus/pgjobs-rules.yaml): valid, tested, on exported metrics.

`promtool` comes from tools/prometheus/build.sh (`make prometheus`); without it these tests skip,
except in CI, which must run them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_dashboard import exported_names

HERE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = HERE / "pgjobs-rules.yaml"
RULE_TESTS = HERE / "pgjobs-rules.test.yaml"
CONFIG = HERE / "prometheus.yaml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    bin_dir = subprocess.run(
        [str(HERE.parents[1] / "tools" / "prometheus" / "build.sh"), "--bin-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tool = Path(bin_dir) / "promtool"
    if not tool.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the rules' tests: {tool} is not built (make prometheus)", pytrace=False)
        pytest.skip(f"{tool} is not built (make prometheus)")
    return tool


def _promtool(tool: Path, *args: str) -> str:
    result = subprocess.run([str(tool), *args], capture_output=True, text=True, cwd=HERE, timeout=120)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> set[str]:
    return {rule["alert"] for rule in _rules() if "alert" in rule}


def test_promtool_checks_the_rules(promtool: Path) -> None:
    out = _promtool(promtool, "check", "rules", RULES.name)
    assert f"SUCCESS: {len(_rules())} rules found" in out


def test_promtool_checks_the_scrape_config(promtool: Path) -> None:
    out = _promtool(promtool, "check", "config", CONFIG.name)
    assert "is valid prometheus config file syntax" in out


def test_promtool_runs_the_rule_tests(promtool: Path) -> None:
    out = _promtool(promtool, "test", "rules", RULE_TESTS.name)
    assert "SUCCESS" in out


def test_the_rules_cover_what_the_issue_asks_for() -> None:
    assert {
        "PgJobsNoLeader",
        "PgJobsStalledJobs",
        "PgJobsStatusSyncLagging",
        "PgJobsQueueGrowingWithoutWorkers",
        "PgJobsHighFailureRate",
        "PgJobsOldSnapshot",
    } <= _alerts()
    assert any("record" in rule for rule in _rules())


def test_rules_use_only_exported_metrics_and_their_own_records() -> None:
    rules = _rules()
    used = {name for rule in rules for name in re.findall(r"\bpgjobs_[a-z0-9_]+", rule["expr"])}
    assert len(used) >= 8
    assert used - exported_names() == set()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    referenced = {name for rule in rules for name in re.findall(r"\bpgjobs:[a-z0-9_:]+", rule["expr"])}
    assert referenced - recorded == set()


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    groups = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in groups:
        fired_in = set()
        for case in group.get("alert_rule_test", []):
            expected = case.get("exp_alerts") or []
            (fires if expected else quiet).add(case["alertname"])
            fired_in |= {alert["exp_labels"]["namespace"] for alert in expected}
        fed = {m for s in group["input_series"] for m in re.findall(r'namespace="([^"]+)"', s["series"])}
        # Series of a namespace the group's alert must stay silent for, besides the firing ones.
        assert fed - fired_in, f"group {group['name']!r} has no namespace where its alert stays silent"
    assert fires == _alerts()
    assert quiet == _alerts()


def test_every_alert_has_a_runbook_section_in_the_operations_guide() -> None:
    rules = yaml.safe_load((HERE / "pgjobs-rules.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    guide = (HERE.parents[1] / "docs" / "operations.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^#+ (.+)$", guide, re.M)}
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url.endswith("docs/operations.md#" + alert["alert"].lower()), url
        assert alert["alert"].lower() in anchors, f"docs/operations.md has no section {alert['alert']}"
