"""Each default is defined once, in code; the chart, the CRD and the docs are checked against it.

The settings objects (`WorkerSettings`, `OperatorSettings`) and `NewJob` hold the defaults; the
`pgjobs` options take theirs from them. `helm/pgjobs/values.yaml`, the CRD's defaults and the
option tables of the README and docs/ must say the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgjobs.cli import main
from pgjobs.operator.settings import OperatorSettings
from pgjobs.store.records import NewJob
from pgjobs.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((ROOT / "helm" / "pgjobs" / "values.yaml").read_text())
CRD = yaml.safe_load((ROOT / "crds" / "pgjobs.dev_pgjobs.yaml").read_text())

#: Values where the chart deliberately differs from the code: in a pod, the worker's metrics and
#: probes are on, and the operator serves the external metrics API when the worker HPA is on,
#: while a process started by hand serves no ports unless asked.
CHART_CHOICES = {("worker", "metricsPort"), ("worker", "healthPort"), ("operator", "externalMetricsPort")}


def snake_case(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def defaults_of(settings: type[Any]) -> dict[str, Any]:
    return {
        field.name: field.default
        for field in dataclasses.fields(settings)
        if field.default is not dataclasses.MISSING
    }


def as_value(default: Any) -> Any:
    """A default the way YAML spells it (tuples are lists, enums their values)."""
    return list(default) if isinstance(default, tuple) else default


@pytest.mark.parametrize(
    ("component", "settings"), [("operator", OperatorSettings), ("worker", WorkerSettings)]
)
def test_chart_values_are_the_code_defaults(component: str, settings: type[Any]) -> None:
    defaults = defaults_of(settings)
    compared = {
        key: (value, as_value(defaults[snake_case(key)]))
        for key, value in VALUES[component].items()
        if snake_case(key) in defaults and (component, key) not in CHART_CHOICES
    }
    assert len(compared) >= 5, "the chart's settings are no longer found by name"
    assert {key: pair for key, pair in compared.items() if pair[0] != pair[1]} == {}


def test_crd_defaults_are_the_code_defaults() -> None:
    (version,) = CRD["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["priority"]["default"] == NewJob.priority.label
    assert spec["queue"]["default"] == NewJob.queue
    assert spec["maxAttempts"]["default"] == NewJob.max_attempts
    assert spec["backoffSeconds"]["default"] == NewJob.backoff_seconds


def option_defaults(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[Any]]:
    """Every `pgjobs` option's defaults over all commands, without the environment's say."""
    for name in list(os.environ):
        if name.startswith("PGJOBS_"):
            monkeypatch.delenv(name)
    found: dict[str, set[Any]] = {}
    commands = next(
        action for action in main.build_parser()._actions if isinstance(action, argparse._SubParsersAction)
    )
    for parser in commands.choices.values():
        for action in parser._actions:
            for option in action.option_strings:
                found.setdefault(option, set()).add(action.default)
    return found


#: "`--heartbeat-interval` (2 s)" in prose, "| `--stall-timeout` | 15 |" in a table.
DOCUMENTED = [
    re.compile(r"`(--[a-z-]+)[^`]*` \((\d+(?:\.\d+)?) s\)"),
    re.compile(r"^\|\s*`(--[a-z-]+)[^`]*`\s*\|\s*(\d+(?:\.\d+)?)\s*\|", re.MULTILINE),
]


#: Where the option tables live, and an option each must still document: a table that moved or
#: lost its format would otherwise leave nothing to compare.
TABLES = {"docs/user-guide.md": "--heartbeat-interval", "docs/operations.md": "--status-writes-per-second"}


def documented_defaults() -> Iterator[tuple[str, str, float]]:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        if path.is_file():
            text = path.read_text()
            for pattern in DOCUMENTED:
                for match in pattern.finditer(text):
                    yield path.relative_to(ROOT).as_posix(), match[1], float(match[2])


def test_documented_defaults_are_the_code_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    options = option_defaults(monkeypatch)
    documented = list(documented_defaults())
    assert documented, "no option defaults found in README.md or docs/"
    found = {(where, option) for where, option, _ in documented}
    assert {where: option for where, option in TABLES.items() if (where, option) not in found} == {}
    wrong = [
        f"{where}: {option} is documented as {value:g}, the code says {options.get(option)}"
        for where, option, value in documented
        if value not in options.get(option, set())
    ]
    assert wrong == []
