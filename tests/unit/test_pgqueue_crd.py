"""Static checks of the PgQueue CRD and of how the operator reads and writes one (the real API
server refuses bad PgQueues in tests/e2e/test_pgqueues.py)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import pgjobs.crd
from pgjobs.operator import pgqueues
from pgjobs.store import queues
from tests.unit.test_crd import walk

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "pgjobs.dev_pgqueues.yaml").read_text())
PGJOB_CRD = yaml.safe_load((ROOT / "crds" / "pgjobs.dev_pgjobs.yaml").read_text())
(VERSION,) = CRD["spec"]["versions"]
ROOT_SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]


def test_names_scope_and_fields() -> None:
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == pgjobs.crd.QUEUE_CRD_NAME and CRD["spec"]["scope"] == "Cluster"
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (
        pgjobs.crd.QUEUE_KIND,
        pgjobs.crd.QUEUE_PLURAL,
        pgjobs.crd.QUEUE_SINGULAR,
        ["pgq"],
    )
    assert VERSION["subresources"] == {"status": {}}
    # kubectl expands a category before a resource name: in category `pgjobs`, PgQueues would
    # be listed by `kubectl get pgjobs`.
    assert "categories" not in names
    assert set(ROOT_SCHEMA["properties"]["spec"]["properties"]) == pgjobs.crd.QUEUE_SPEC_FIELDS
    assert set(ROOT_SCHEMA["properties"]["status"]["properties"]) == pgjobs.crd.QUEUE_STATUS_FIELDS
    columns = [column["name"] for column in VERSION["additionalPrinterColumns"]]
    default = ["Pending", "Running", "Workers", "Paused", "Max Running", "Oldest", "Age"]
    assert columns == [*default[:5], "Max Per Second", *default[5:]]
    wide_only = [column["name"] for column in VERSION["additionalPrinterColumns"] if column.get("priority")]
    assert wide_only == ["Max Per Second"], "the issue's columns stay the default ones"


def test_every_field_is_documented_and_typed() -> None:
    for path, sub in walk(ROOT_SCHEMA):
        assert str(sub.get("description", "")).strip(), f"{path} has no description"
        assert sub.get("type"), f"{path} has no type"


def test_the_name_rule_is_the_queue_name_of_a_pgjob() -> None:
    queue = PGJOB_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "queue"
    ]
    [rule] = ROOT_SCHEMA["x-kubernetes-validations"]
    assert rule["rule"] == f"self.metadata.name.matches('{queue['pattern']}')"
    pattern = re.compile(queue["pattern"])
    assert pattern.match("team-a.batch_1") and not pattern.match("Team") and not pattern.match("a" * 64)


def test_the_spec_as_the_database_gets_it() -> None:
    meta = {"name": "batch", "uid": "u1"}
    assert pgqueues.spec_of(
        {"metadata": meta, "spec": {"paused": True, "maxRunning": 3}}
    ) == queues.QueueSpec("batch", "u1", paused=True, max_running=3)
    assert pgqueues.spec_of({"metadata": meta, "spec": {"maxPerSecond": 0.5}}) == queues.QueueSpec(
        "batch", "u1", max_per_second=0.5
    )
    assert pgqueues.spec_of({"metadata": meta}) == queues.QueueSpec("batch", "u1")


@pytest.mark.parametrize(
    "spec",
    [{"maxPerSecond": 0}, {"maxPerSecond": -1.5}, {"maxPerSecond": "fast"}, {"maxPerSecond": True},
     {"maxRunning": -1}, {"maxRunning": 2.5}],
)  # fmt: skip
def test_a_spec_an_older_crd_let_through_is_refused_before_the_database(spec: dict[str, Any]) -> None:
    """One line from the operator (copy_spec), not a database error and a traceback per round."""
    with pytest.raises(pgqueues.BadSpec, match="must be"):
        pgqueues.spec_of({"metadata": {"name": "batch", "uid": "u1"}, "spec": spec})


def test_the_status_clears_the_oldest_time_when_nothing_waits() -> None:
    since = datetime.datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=datetime.UTC)
    stats = queues.QueueStats("batch", 4, 1, 2, since, paused=False, max_running=None)
    assert pgqueues.status_of(stats, 7) == {
        "pending": 4,
        "running": 1,
        "workers": 2,
        "oldestPendingSince": "2026-01-02T03:04:05Z",
        "observedGeneration": 7,
    }
    idle = queues.QueueStats("batch", 0, 0, 0, None, paused=True, max_running=0)
    assert pgqueues.status_of(idle, None)["oldestPendingSince"] is None
