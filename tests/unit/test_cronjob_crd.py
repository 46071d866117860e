"""Static checks of the PgCronJob CRD: names, columns, documentation, defaults, the patterns the
API server refuses schedules with, and a jobTemplate.spec that is the PgJob's spec.

The real API server checks it too (tests/e2e/test_cronjobs.py refuses a bad schedule).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import pgjobs.crd
from pgjobs.operator import schedules
from tests.unit.test_crd import check_value, resolve, walk

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "pgjobs.dev_pgcronjobs.yaml").read_text())
PGJOB_CRD = yaml.safe_load((ROOT / "crds" / "pgjobs.dev_pgjobs.yaml").read_text())
(VERSION,) = CRD["spec"]["versions"]
ROOT_SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
SPEC = ROOT_SCHEMA["properties"]["spec"]
STATUS = ROOT_SCHEMA["properties"]["status"]


def test_names_and_version() -> None:
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == pgjobs.crd.CRON_CRD_NAME
    assert CRD["spec"]["group"] == pgjobs.crd.GROUP and CRD["spec"]["scope"] == "Namespaced"
    assert (names["kind"], names["plural"], names["singular"]) == (
        pgjobs.crd.CRON_KIND,
        pgjobs.crd.CRON_PLURAL,
        pgjobs.crd.CRON_SINGULAR,
    )
    assert names["shortNames"] == ["pgcj"] and "categories" not in names
    assert VERSION["name"] == pgjobs.crd.VERSION and VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}


def test_fields_are_the_agreed_ones() -> None:
    assert set(SPEC["properties"]) == pgjobs.crd.CRON_SPEC_FIELDS
    assert set(STATUS["properties"]) == pgjobs.crd.CRON_STATUS_FIELDS
    assert SPEC["required"] == ["schedule", "jobTemplate"]


def test_every_field_is_documented_and_typed() -> None:
    for path, sub in walk(ROOT_SCHEMA):
        if path.startswith(".metadata"):
            continue
        assert str(sub.get("description", "")).strip(), f"{path} has no description"
        assert sub.get("type") or sub.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"


def without_transition_rules(schema: Any) -> Any:
    """The schema without CEL rules on oldSelf (immutability makes no sense in a template)."""
    if isinstance(schema, list):
        return [without_transition_rules(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: without_transition_rules(value) for key, value in schema.items()}
    rules = [rule for rule in schema.get("x-kubernetes-validations", []) if "oldSelf" not in rule["rule"]]
    result.pop("x-kubernetes-validations", None)
    if rules:
        result["x-kubernetes-validations"] = rules
    return result


def test_job_template_spec_is_the_pgjob_spec() -> None:
    pgjob_spec = PGJOB_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    template = copy.deepcopy(SPEC["properties"]["jobTemplate"]["properties"]["spec"])
    assert "oldSelf" not in yaml.safe_dump(template)
    expected = without_transition_rules(pgjob_spec)
    template.pop("description")
    expected.pop("description")
    assert template == expected, (
        "copy the PgJob spec schema into jobTemplate.spec (without its oldSelf rules)"
    )


def test_defaults_agree_with_the_operator() -> None:
    fields = SPEC["properties"]
    assert fields["successfulJobsHistoryLimit"]["default"] == schedules.SUCCESSFUL_HISTORY
    assert fields["failedJobsHistoryLimit"]["default"] == schedules.FAILED_HISTORY
    assert fields["concurrencyPolicy"]["enum"] == [p.value for p in schedules.ConcurrencyPolicy]
    assert fields["concurrencyPolicy"]["default"] == schedules.ConcurrencyPolicy.ALLOW.value
    assert fields["suspend"]["default"] is False


@pytest.mark.parametrize(
    "schedule",
    ["* * * * *", "0 3 * * *", "*/15 9-17 * * MON-FRI", "0 3 ? * *", "0 0 1,15 * *", *schedules.SHORTHANDS],
)
def test_the_schedule_pattern_accepts(schedule: str) -> None:
    assert re.search(SPEC["properties"]["schedule"]["pattern"], schedule)
    schedules.parse(schedule, None)  # and the operator can use what the pattern lets through


@pytest.mark.parametrize(
    "schedule",
    [
        "",
        "* * * *",
        "* * * * * *",
        "@reboot",
        "@every 5m",
        "CRON_TZ=UTC 0 3 * * *",
        "TZ=UTC 0 3 * * *",
    ],
)
def test_the_schedule_pattern_refuses(schedule: str) -> None:
    assert not re.search(SPEC["properties"]["schedule"]["pattern"], schedule)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_the_time_zone_pattern_accepts(zone: str) -> None:
    assert re.search(SPEC["properties"]["timeZone"]["pattern"], zone)
    schedules.parse("0 3 * * *", zone)


@pytest.mark.parametrize("zone", ["", "../etc/passwd", "Europe/", "/UTC", "Europe Berlin", "+05:00"])
def test_the_time_zone_pattern_refuses(zone: str) -> None:
    assert not re.search(SPEC["properties"]["timeZone"]["pattern"], zone)


def test_name_limit_leaves_room_for_the_pgjob_names() -> None:
    (rule,) = ROOT_SCHEMA["x-kubernetes-validations"]
    assert rule["rule"] == "self.metadata.name.size() <= 52"
    assert rule["message"].startswith("metadata.name")


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    assert list(columns) == ["Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"]
    for name, column in columns.items():
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        target = resolve(ROOT_SCHEMA, column["jsonPath"])
        assert target is not None, name
        kind = "date" if target.get("format") == "date-time" else target["type"]
        assert kind == column["type"], name


def test_the_example_is_valid() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "examples" / "pgcronjob.yaml").read_text())
    assert doc["apiVersion"] == pgjobs.crd.API_VERSION and doc["kind"] == pgjobs.crd.CRON_KIND
    assert check_value(".spec", SPEC, doc["spec"]) == []
    schedules.parse(doc["spec"]["schedule"], doc["spec"]["timeZone"])


def test_check_value_refuses_a_bad_template() -> None:
    bad = {"schedule": "@daily", "jobTemplate": {"spec": {"task": "9x", "priority": "Urgent"}}}
    assert len(check_value(".spec", SPEC, bad)) == 2
