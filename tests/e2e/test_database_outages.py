"""The operator through a database outage: a PgJob created while PostgreSQL refuses writes is
applied once it takes them again, never Failed; PgJobs that older operators failed for an
outage get their row and run; and a leader whose loops are stuck fails its /healthz.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg

from pgjobs.devenv.processes import free_port
from pgjobs.operator import handlers, outages
from pgjobs.store import connecting
from tests.e2e.operator_helpers import (
    GROUP,
    PLURAL,
    VERSION,
    Services,
    create,
    events,
    get,
    rows,
    sleep_job,
    status,
    wait_phase,
    wait_until,
)
from tests.processes import set_read_only

#: Longer than the three retries (2 s apart) after which older operators failed a PgJob.
READ_ONLY_FOR = 4 * handlers.RETRY_BACKOFF


def test_a_pgjob_created_in_a_read_only_window_waits_for_it_and_runs_once(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    services.operator()
    services.worker()
    create(kube, namespace, sleep_job("warm-up", seconds=0.2, steps=1))
    wait_phase(kube, namespace, "warm-up", "Completed")
    set_read_only(database, True)
    try:
        create(kube, namespace, sleep_job("in-the-window", seconds=0.5, steps=2))
        uid = get(kube, namespace, "in-the-window")["metadata"]["uid"]
        said = wait_until(
            lambda: [e for e in events(kube, namespace, uid) if e["reason"] == outages.DATABASE_UNAVAILABLE],
            timeout=15,
            what="a DatabaseUnavailable Event",
        )
        # The cut session (57P01) or the read-only one (25006), whichever the create met first.
        assert said[0]["type"] == "Warning" and "SQLSTATE" in said[0]["message"], said
        time.sleep(READ_ONLY_FOR)
        assert status(kube, namespace, "in-the-window").get("phase") != "Failed"
    finally:
        set_read_only(database, False)
    done = wait_phase(kube, namespace, "in-the-window", "Completed", timeout=40)
    assert done["attempts"] == 1
    assert [row["resource_name"] for row in rows(database)].count("in-the-window") == 1
    reasons = [e["reason"] for e in events(kube, namespace, uid)]
    assert reasons.count(outages.DATABASE_UNAVAILABLE) == 1, reasons  # once per outage


def test_a_pgjob_an_older_operator_failed_for_an_outage_runs_after_the_upgrade(
    kube: Any, namespace: str, services: Services, database: connecting.DatabaseSettings
) -> None:
    create(kube, namespace, sleep_job("failed-by-outage", seconds=0.2, steps=1))
    old_message = (
        "invalid PgJob: the operator failed to apply it: ReadOnlySqlTransaction: "
        "cannot execute INSERT in a read-only transaction"
    )
    kube.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "failed-by-outage",
        {"status": {"phase": "Failed", "message": old_message}},
    )  # fmt: skip
    services.operator()
    services.worker()
    done = wait_phase(kube, namespace, "failed-by-outage", "Completed", timeout=40)
    assert done.get("jobId") is not None and done.get("message") != old_message, done


def _health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except urllib.error.URLError:  # not listening yet
        return 0, {}


def test_a_leader_whose_status_sync_is_stuck_fails_its_healthz(
    services: Services, database: connecting.DatabaseSettings
) -> None:
    """The status sync blocked on a lock that is never released (as a stuck await would be):
    /healthz fails after --duty-stall-timeout, and recovers once the loop goes round again."""
    port = free_port()
    services.operator("operator", "--liveness-port", str(port), "--duty-stall-timeout", "3")
    healthy = (200, {"duties": "leading"})
    first = wait_until(lambda: (a := _health(port)) == healthy and a, timeout=30, what="a healthy leader")
    assert first == healthy
    with psycopg.connect(database.conninfo()) as blocker:
        blocker.execute("LOCK TABLE pgjobs.jobs IN ACCESS EXCLUSIVE MODE")
        # kopf answers from a cache of up to 10 s: the failure shows within the timeout plus that.
        stuck = wait_until(lambda: (a := _health(port))[0] != 200 and a, timeout=30, what="/healthz failing")
        assert stuck[0] == 500, stuck
    again = wait_until(lambda: (a := _health(port)) == healthy and a, timeout=30, what="healthy again")
    assert again == healthy
