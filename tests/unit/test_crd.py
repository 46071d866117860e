"""Static checks of the PgJob CRD and the example manifests.

The real API server checks the CRD too (tests/e2e/test_crd_validation.py);
these catch the mistakes it accepts silently: an undocumented field, a
printer column pointing at nothing, a default that breaks its own bounds,
an example that would be refused.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import pgjobs.crd
from pgjobs.cli.kubectl import objects
from pgjobs.states import JobState

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "pgjobs.dev_pgjobs.yaml"
EXAMPLES = ROOT / "deploy" / "examples"
PHASES = tuple(state.phase for state in JobState)

Schema = dict[str, Any]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    assert isinstance(only, dict)
    return only


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> Schema:
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every (path, sub-schema) below `schema`, depth first."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from walk(schema["items"], f"{path}[]")


def resolve(root: Schema, json_path: str) -> Schema | None:
    """The sub-schema a simple printer-column jsonPath like .status.phase points at."""
    node: Schema | None = root
    for part in json_path.lstrip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


def test_names_and_version(crd: dict[str, Any], version: dict[str, Any]) -> None:
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{pgjobs.crd.PLURAL}.{pgjobs.crd.GROUP}"
    assert crd["spec"]["group"] == pgjobs.crd.GROUP
    assert (names["kind"], names["plural"], names["singular"]) == (pgjobs.crd.KIND, "pgjobs", "pgjob")
    assert names["shortNames"] == ["pgj"] and names["categories"] == ["pgjobs"]
    assert version["name"] == pgjobs.crd.VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_every_field_is_documented(root: Schema) -> None:
    undocumented = [
        path
        for path, sub in walk(root)
        # metadata may not carry a description (the API server refuses it).
        if not path.startswith(".metadata") and not str(sub.get("description", "")).strip()
    ]
    assert undocumented == []


def test_schema_is_structural(root: Schema) -> None:
    # The structural-schema rules the API server would refuse at apply time,
    # checked here so a broken CRD fails fast without a cluster.
    for path, sub in [("", root), *walk(root)]:
        typeless_ok = sub.get("x-kubernetes-preserve-unknown-fields") or sub.get("x-kubernetes-int-or-string")
        assert sub.get("type") or typeless_ok, f"{path or '<root>'} has no type"
        assert not ("properties" in sub and "additionalProperties" in sub), path
        if sub.get("type") == "array":
            assert "items" in sub, f"{path} is an array without items"
    # The API server refuses anything but type (and name restrictions) here.
    assert set(root["properties"]["metadata"]) == {"type"}


def test_spec_fields_are_the_agreed_ones(root: Schema) -> None:
    spec = root["properties"]["spec"]
    assert set(spec["properties"]) == {
        "task",
        "args",
        "priority",
        "queue",
        "maxAttempts",
        "backoffSeconds",
        "timeoutSeconds",
        "ttlSecondsAfterFinished",
        "stopped",
        "restarts",
        "runAt",
        "uniqueKey",
    }
    assert spec["required"] == ["task"]


def test_status_declares_every_operator_field(root: Schema) -> None:
    # Undeclared status fields are pruned silently by the API server.
    status = root["properties"]["status"]["properties"]
    assert set(status) >= {
        "phase",
        "progress",
        "progressPercent",
        "message",
        "worker",
        "attempts",
        "restarts",
        "jobId",
        "startedAt",
        "finishedAt",
        "result",
        "observedGeneration",
        "conditions",
    }
    assert status["result"]["x-kubernetes-preserve-unknown-fields"] is True
    condition = status["conditions"]
    assert condition["x-kubernetes-list-type"] == "map"
    assert condition["x-kubernetes-list-map-keys"] == ["type"]
    assert set(condition["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_enums_agree_with_the_plugin(root: Schema) -> None:
    spec = root["properties"]["spec"]["properties"]
    status = root["properties"]["status"]["properties"]
    assert tuple(spec["priority"]["enum"]) == objects.PRIORITIES
    assert tuple(status["phase"]["enum"]) == PHASES
    assert set(PHASES) > objects.FINISHED_PHASES


@pytest.mark.parametrize(
    ("field", "rule"),
    [
        ("task", "self == oldSelf"),
        ("args", "self == oldSelf"),
        ("queue", "self == oldSelf"),
        ("restarts", "self >= oldSelf"),
    ],
)
def test_transition_rules(root: Schema, field: str, rule: str) -> None:
    (validation,) = root["properties"]["spec"]["properties"][field]["x-kubernetes-validations"]
    assert validation["rule"] == rule
    # A person reads this in kubectl's error output: it must name the field.
    assert validation["message"].startswith(field)


def check_value(path: str, schema: Schema, value: Any) -> list[str]:
    """Errors of `value` against the subset of OpenAPI our CRD uses."""
    errors: list[str] = []
    kind = schema.get("type")
    expected = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list}
    if kind and not isinstance(value, expected[kind]):
        return [f"{path}: expected {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match pattern")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: below minimum")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: above maximum")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: too long")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(f"{path}: too many properties")
    if kind == "object" and "properties" in schema:
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, sub_value in value.items():
            sub = schema["properties"].get(name)
            if sub is None:
                errors.append(f"{path}.{name}: unknown field (would be pruned)")
            else:
                errors.extend(check_value(f"{path}.{name}", sub, sub_value))
    return errors


def test_defaults_satisfy_their_own_constraints(root: Schema) -> None:
    defaulted = [(p, s) for p, s in walk(root) if "default" in s]
    assert {p for p, _ in defaulted} == {
        ".spec.args",
        ".spec.priority",
        ".spec.queue",
        ".spec.maxAttempts",
        ".spec.backoffSeconds",
        ".spec.stopped",
        ".spec.restarts",
    }
    for path, sub in defaulted:
        assert check_value(path, sub, sub["default"]) == []
    spec = root["properties"]["spec"]["properties"]
    assert spec["priority"]["default"] == "Regular"
    assert spec["queue"]["default"] == "default"
    assert spec["maxAttempts"]["default"] == 3


def test_patterns_accept_and_refuse_what_the_description_says(root: Schema) -> None:
    spec = root["properties"]["spec"]["properties"]
    task, queue = spec["task"]["pattern"], spec["queue"]["pattern"]
    for ok in ("sleep", "_x", "reports.nightly:v2", "a" * 128):
        assert re.search(task, ok), ok
    for bad in ("", "1abc", "has space", "a" * 129, "-x"):
        assert not re.search(task, bad), bad
    for ok in ("default", "a", "io-bound_2.x"):
        assert re.search(queue, ok), ok
    for bad in ("", "Default", "-a", "a-", "a" * 64):
        assert not re.search(queue, bad), bad


def test_printer_columns_point_at_declared_fields(root: Schema, version: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Phase",
        "Priority",
        "Progress",
        "Worker",
        "Attempts",
        "Age",
        "Run At",
        "Task",
        "Queue",
        "Message",
    ]
    for name, column in columns.items():
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        target = resolve(root, column["jsonPath"])
        assert target is not None, f"column {name} points at undeclared {column['jsonPath']}"
        assert target["type"] == column["type"], name
    assert columns["Progress"]["jsonPath"] == ".status.progressPercent"
    assert columns["Age"]["type"] == "date"
    wide = {"Run At", "Task", "Queue", "Message"}  # -o wide only
    assert all(columns[name].get("priority") == 1 for name in wide)
    assert all(c.get("priority", 0) == 0 for n, c in columns.items() if n not in wide)


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}#{i}", doc)
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()))
        # PgCronJob examples are checked in tests/unit/test_cronjob_crd.py.
        if doc and doc.get("kind") != pgjobs.crd.CRON_KIND
    ]


@pytest.mark.parametrize(("where", "doc"), example_docs(), ids=[w for w, _ in example_docs()])
def test_examples_are_valid(root: Schema, where: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == f"{pgjobs.crd.GROUP}/{pgjobs.crd.VERSION}"
    assert doc["kind"] == pgjobs.crd.KIND
    assert check_value(".spec", root["properties"]["spec"], doc["spec"]) == []


def test_all_fields_example_sets_every_spec_field(root: Schema) -> None:
    doc = yaml.safe_load((EXAMPLES / "all-fields.yaml").read_text())
    assert set(doc["spec"]) == set(root["properties"]["spec"]["properties"])


def test_demo_jobs_are_the_old_systems_five() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "demo-jobs.yaml").read_text()))
    by_name = {d["metadata"]["name"]: d for d in docs if d}
    assert sorted(by_name) == [
        "demo-high-1",
        "demo-high-2",
        "demo-high-3",
        "demo-regular-1",
        "demo-regular-2",
    ]
    for name, doc in by_name.items():
        assert doc["spec"]["priority"] == ("High" if "high" in name else "Regular")
        assert doc["spec"]["task"] == "sleep"
        assert doc["spec"]["args"] == {"seconds": 10, "steps": 10}
        assert doc["metadata"]["labels"] == {"app.kubernetes.io/part-of": "pgjobs-demo"}


def test_check_value_catches_errors(root: Schema) -> None:
    # The example checks above are only worth something if this can fail.
    spec = root["properties"]["spec"]
    bad = {"task": "9x", "priority": "Urgent", "maxAttempts": 0, "colour": "red"}
    errors = check_value(".spec", spec, bad)
    assert len(errors) == 4, errors


def test_the_operator_needs_exactly_the_fields_the_crd_declares(crd: dict[str, Any]) -> None:
    """pgjobs.crd.SPEC_FIELDS/STATUS_FIELDS are what the operator's preflight asks of the cluster's CRD."""
    assert pgjobs.crd.missing_fields(crd) == []
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(spec) == pgjobs.crd.SPEC_FIELDS
    older = copy.deepcopy(crd)
    del older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "restarts"
    ]
    assert pgjobs.crd.missing_fields(older) == ["spec.restarts"]


def test_the_selectable_fields_are_declared_fields(root: Schema, version: dict[str, Any]) -> None:
    paths = [field["jsonPath"] for field in version["selectableFields"]]
    assert paths == [".spec.queue", ".spec.task", ".status.phase"]
    assert all(resolve(root, path) is not None for path in paths)
