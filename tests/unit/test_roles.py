"""The group roles' declaration (pgjobs/store/roles.py) and the scrubbed environment of the
processes tasks start (pgjobs/tasks/environment.py)."""

from __future__ import annotations

import pytest

from pgjobs.store import queries, roles
from pgjobs.tasks import environment


def test_every_statement_is_declared_for_the_groups_that_run_it() -> None:
    """A new statement in queries.sql says which group runs it, so that its grants are checked
    (tests/integration/test_roles.py runs each as a member of its group)."""
    declared = roles.WORKER_STATEMENTS | roles.OPERATOR_STATEMENTS
    assert set(queries.STATEMENTS) - declared == set(), "add them to WORKER_ or OPERATOR_STATEMENTS"


def test_workers_may_not_change_what_a_job_is() -> None:
    (jobs_update,) = [g for g in roles.GRANTS[roles.WORKER] if g.name == "jobs" and g.privilege == "UPDATE"]
    assert jobs_update.columns, "workers would update every column of jobs"
    forbidden = {
        "task",
        "args",
        "queue",
        "priority",
        "max_attempts",
        "timeout_seconds",
        "resource_uid",
        "resource_namespace",
        "resource_name",
        "synced_count",
        "restarts",
    }
    assert forbidden.isdisjoint(jobs_update.columns)
    written = {(g.privilege, g.name) for g in roles.GRANTS[roles.WORKER]}
    assert ("DELETE", "jobs") not in written and ("INSERT", "jobs") not in written
    assert not any(
        g.name == "migrations" and g.privilege != "SELECT" for gs in roles.GRANTS.values() for g in gs
    )


def test_an_empty_group_name_leaves_the_group_out() -> None:
    assert roles.GroupRoles(worker="").by_group() == {roles.OPERATOR: "pgjobs_operator"}


def test_started_processes_inherit_only_the_allow_list() -> None:
    worker_env = {
        "PATH": "/usr/bin",
        "HOME": "/home/pgjobs",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "DB_PASSWORD": "secret",
        "PGPASSWORD": "secret",
        "PGJOBS_DATABASE_URL": "postgresql://pgjobs@db/pgjobs",
        "KUBECONFIG": "/etc/kube",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "SENTRY_DSN": "https://key@sentry",
        "LD_PRELOAD": "/evil.so",
    }
    assert environment.scrubbed({"MODE": "fast"}, source=worker_env) == {
        "PATH": "/usr/bin",
        "HOME": "/home/pgjobs",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "MODE": "fast",
    }


@pytest.mark.parametrize("extra", [{"BAD NAME": "x"}, {"A=B": "x"}, {"OK": 1}, {"": "x"}])
def test_a_jobs_environment_needs_names_and_strings(extra: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="environment variables"):
        environment.scrubbed(extra, source={})  # type: ignore[arg-type]


def test_the_charts_group_names_are_the_code_defaults() -> None:
    from pathlib import Path

    import yaml

    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "helm/pgjobs/values.yaml").read_text())
    chart_roles = values["database"]["roles"]
    assert (chart_roles["workerGroup"], chart_roles["operatorGroup"]) == (
        roles.GroupRoles.worker,
        roles.GroupRoles.operator,
    )
    assert chart_roles["separate"] is False
