"""The namespace policy: which rule a namespace gets, what it allows, and files it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgjobs.cli import services
from pgjobs.cli.main import build_parser
from pgjobs.operator import policy
from pgjobs.store.records import NewJob, ResourceJob

POLICY = """
contact: the platform team (#platform)
rules:
  - namespaces: [team-a]
    queues: [a]
    tasks: [sleep, "report.*"]
    maxUnfinished: 2
    maxTimeoutSeconds: 60
    maxAttempts: 3
  - namespaces: ["batch-*"]
    queues: ["batch-*", default]
  - namespaces: ["*"]
    tasks: ["*"]
    queues: [default]
"""


def resource(namespace: str, **job: Any) -> ResourceJob:
    return ResourceJob(uid="u", namespace=namespace, name="n", job=NewJob(**{"task": "sleep", **job}))


@pytest.fixture
def loaded(tmp_path: Path) -> policy.Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return policy.load(str(path))


def test_no_file_allows_everything() -> None:
    everything = policy.load(None)
    assert everything == policy.Policy()
    assert everything.rule_for("any").unrestricted
    everything.check(resource("any", task="shell", queue="powerful", timeout_seconds=604800))


def test_the_first_matching_rule_applies(loaded: policy.Policy) -> None:
    assert loaded.rule_for("team-a").queues == ("a",)
    assert loaded.rule_for("batch-7").queues == ("batch-*", "default")
    assert loaded.rule_for("team-ab").queues == ("default",)  # patterns match the whole name
    assert loaded.rule_for("Team-A").queues == ("default",)  # and case matters
    assert not loaded.rule_for("other").unrestricted


def test_a_namespace_no_rule_matches_may_use_everything() -> None:
    only = policy.parse({"rules": [{"namespaces": ["team-a"], "queues": ["a"]}]})
    assert only.rule_for("team-b").unrestricted
    only.check(resource("team-b", queue="b"))


def test_allowed_queues_and_tasks(loaded: policy.Policy) -> None:
    loaded.check(resource("team-a", queue="a", task="sleep"))
    loaded.check(resource("team-a", queue="a", task="report.monthly"))
    loaded.check(resource("batch-1", queue="batch-night", task="shell"))
    with pytest.raises(policy.Refused) as refused:
        loaded.check(resource("team-a", queue="b"))
    message = str(refused.value)
    assert "namespace 'team-a'" in message and "queue 'b'" in message and "(allowed: a)" in message
    assert "the platform team (#platform)" in message
    with pytest.raises(policy.Refused, match="may not run task 'shell'"):
        loaded.check(resource("team-a", queue="a", task="shell"))
    with pytest.raises(policy.Refused, match="queue 'a'"):
        loaded.check(resource("elsewhere", queue="a"))


def test_maxima_refuse_new_rows_and_bound_updated_ones(loaded: policy.Policy) -> None:
    with pytest.raises(policy.Refused, match=r"timeoutSeconds 61 \(at most 60\)"):
        loaded.check(resource("team-a", queue="a", timeout_seconds=61))
    with pytest.raises(policy.Refused, match=r"maxAttempts 4 \(at most 3\)"):
        loaded.check(resource("team-a", queue="a", max_attempts=4))
    loaded.check(resource("team-a", queue="a", timeout_seconds=60, max_attempts=3))
    # No timeout: the maximum is the timeout. An update above a maximum is held to it.
    assert loaded.bounded(resource("team-a", queue="a")).job.timeout_seconds == 60
    held = loaded.bounded(resource("team-a", queue="a", timeout_seconds=600, max_attempts=9)).job
    assert (held.timeout_seconds, held.max_attempts) == (60, 3)
    untouched = resource("other", timeout_seconds=600)
    assert loaded.bounded(untouched) is untouched


def test_an_empty_file_is_no_policy(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert policy.load(str(path)) == policy.Policy()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "not YAML"),
        ("- namespaces: [a]", "top level: must be a mapping"),
        ("rule: []", "unknown key(s) rule"),
        ("rules: {team-a: {queues: [a]}}", "rules: must be a list"),
        ("rules: [{queues: [a]}]", "rules[0]: needs `namespaces`"),
        ("rules: [{namespaces: team-a}]", "rules[0].namespaces: must be a list"),
        ("rules: [{namespaces: [a], queue: [a]}]", "rules[0]: unknown key(s) queue"),
        ("rules: [{namespaces: [a], tasks: [1]}]", "rules[0].tasks: must be a list"),
        ("rules: [{namespaces: [a], maxUnfinished: -1}]", "rules[0].maxUnfinished: must be a whole number"),
        ("rules: [{namespaces: [a], maxTimeoutSeconds: 0}]", "rules[0].maxTimeoutSeconds"),
        ("rules: [{namespaces: [a], maxAttempts: '3'}]", "rules[0].maxAttempts"),
        ("contact: ''\nrules: []", "contact: must be a non-empty string"),
    ],
)
def test_a_malformed_file_is_refused_with_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(policy.PolicyError) as error:
        policy.load(str(path))
    assert str(error.value).startswith(f"policy file {path}: ")
    assert message in str(error.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(policy.PolicyError, match="cannot be read"):
        policy.load(str(tmp_path / "absent.yaml"))


def test_the_operator_option_hands_the_path_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGJOBS_POLICY_FILE", raising=False)
    args = build_parser().parse_args(["operator"])
    assert services.operator_settings(args).policy_file is None
    args = build_parser().parse_args(["operator", "--policy-file", "/etc/pgjobs/policy/policy.yaml"])
    assert services.operator_settings(args).policy_file == "/etc/pgjobs/policy/policy.yaml"
