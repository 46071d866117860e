"""The console in a real headless Chromium, against a real kube-apiserver, PostgreSQL, operator
and worker: what a person sees and clicks, checked in Kubernetes and in the answers' statuses."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from pgjobs.store import connecting
from tests.browser.conftest import Console
from tests.e2e.operator_helpers import (
    Services,
    create,
    exists,
    get,
    pgjob,
    query,
    sleep_job,
    wait_phase,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: A job that fails at its first attempt (the worker runs with --enable-shell).
FAILING = {"command": ["sh", "-c", "exit 3"]}


def job_id(database: connecting.DatabaseSettings, name: str) -> int:
    return int(query(database, "SELECT id FROM pgjobs.jobs WHERE resource_name = %s", name)[0]["id"])


def status_of(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_watch_progress_stop_a_job_and_restart_the_failed_ones(
    kube: Any,
    namespace: str,
    services: Services,
    database: connecting.DatabaseSettings,
    console: Console,
    page: Any,
    screenshot: Any,
) -> None:
    services.operator()
    services.worker("worker-1", "--enable-shell")
    failing = [pgjob(name, "shell", args=FAILING, maxAttempts=1) for name in ("bad-1", "bad-2")]
    create(kube, namespace, *failing)
    for name in ("bad-1", "bad-2"):
        wait_phase(kube, namespace, name, "Failed", timeout=30)
    create(kube, namespace, sleep_job("slow", seconds=40, steps=40))
    wait_phase(kube, namespace, "slow", "Running", timeout=30)

    page.goto(f"{console.url}/jobs")
    for name in ("slow", "bad-1", "bad-2"):
        page.get_by_text(f"{namespace}/{name}").first.wait_for(timeout=10_000)
    screenshot("console-jobs")

    # A job's page: its progress rises while the page stays the same document.
    slow = job_id(database, "slow")
    page.goto(f"{console.url}/jobs/{slow}")
    assert page.locator("#pgjob").inner_text() == f"{namespace}/slow"
    page.evaluate("window.sameDocument = true")
    shown = page.locator("#progress")
    first = int(shown.get_attribute("data-progress"))
    wait_until(lambda: int(shown.get_attribute("data-progress")) > first, timeout=15, what="progress to rise")
    # Its log: the sleep task's step lines, stored by the worker, arrive without a reload too.
    page.locator("#logs pre", has_text="step 2/40").wait_for(timeout=15_000)
    assert page.evaluate("window.sameDocument") is True
    screenshot("console-job")

    # The workers and queues while it runs: the worker holds it, the queue counts it.
    page.goto(f"{console.url}/workers")
    page.locator(f'a.chip[href="/jobs/{slow}"]').wait_for(timeout=10_000)
    assert "worker-1" in page.locator("tbody").inner_text()
    screenshot("console-workers")
    page.goto(f"{console.url}/queues")
    card = page.locator(".card", has_text="default")
    card.wait_for(timeout=10_000)
    assert re.search(r"max per second\s+no limit", card.inner_text(), re.I), card.inner_text()
    screenshot("console-queues")

    # Stop: through the PgJob, as `kubectl pgjobs stop` does.
    page.goto(f"{console.url}/jobs/{slow}")
    page.click("#action-stop")
    page.wait_for_url(re.compile(rf"/jobs/{slow}\?notice="))
    assert "stop requested" in page.locator(".notice").inner_text()
    assert get(kube, namespace, "slow")["spec"]["stopped"] is True
    wait_phase(kube, namespace, "slow", "Stopped", timeout=15)
    page.locator("#phase", has_text="Stopped").wait_for(timeout=10_000)

    # The bulk restart of the filter's Failed jobs: a new run of each PgJob.
    page.goto(f"{console.url}/jobs?namespace={namespace}&phase=Failed")
    assert page.locator("tbody tr").count() == 2
    page.click("#restart-failed")
    page.wait_for_url(re.compile(r"notice="))
    assert "restarted 2 Failed job(s)" in page.locator(".notice").inner_text()
    for name in ("bad-1", "bad-2"):
        assert get(kube, namespace, name)["spec"]["restarts"] == 1
    assert get(kube, namespace, "slow")["spec"]["restarts"] == 0


def test_forged_posts_unknown_jobs_and_odd_filters_get_proper_answers(
    kube: Any,
    namespace: str,
    services: Services,
    database: connecting.DatabaseSettings,
    console: Console,
    page: Any,
) -> None:
    services.operator()
    create(kube, namespace, pgjob("held", "noop", args={"note": "<b>bold</b>"}))
    wait_until(lambda: query(database, "SELECT id FROM pgjobs.jobs"), timeout=30, what="the row")
    held = job_id(database, "held")
    page.goto(f"{console.url}/jobs/{held}")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "pgjobs_csrf")

    stop = f"{console.url}/jobs/{held}/stop"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cookie = {"Cookie": f"pgjobs_csrf={token}"}
    # Without the token, with a wrong one, or from another site: 403, and the PgJob untouched.
    assert status_of(stop, b"", form) == 403
    assert status_of(stop, b"csrf=" + token.encode(), form) == 403  # no cookie: no session
    assert status_of(stop, b"csrf=wrong", form | cookie) == 403
    assert (
        status_of(stop, b"csrf=" + token.encode(), form | cookie | {"Origin": "http://evil.example"}) == 403
    )
    time.sleep(0.5)
    assert get(kube, namespace, "held")["spec"].get("stopped") is not True
    # The same form from the console itself is accepted (a redirect back to the job).
    same = {"Origin": console.url}
    assert status_of(stop, b"csrf=" + urllib.parse.quote(token).encode(), form | cookie | same) in (200, 303)
    wait_until(
        lambda: get(kube, namespace, "held")["spec"].get("stopped") is True, timeout=10, what="stopped"
    )

    # A job that does not exist, and ids that cannot be one: 404 pages.
    for path in ("/jobs/987654321", "/jobs/abc", "/jobs/-1", f"/jobs/{2**70}", "/nowhere"):
        answer = page.goto(f"{console.url}{path}")
        assert answer.status == 404, path
        assert "404" in page.locator("main h1").inner_text()
    assert status_of(f"{console.url}/jobs/987654321/stop", b"csrf=" + token.encode(), form | cookie) == 404
    assert status_of(f"{console.url}/jobs/{held}/explode", b"csrf=" + token.encode(), form | cookie) == 404
    # Odd filter values are searched for literally (and shown escaped), never a 500.
    odd = urllib.parse.quote("'%<script>alert(1)</script>")
    answer = page.goto(f"{console.url}/jobs?q={odd}&namespace={odd}")
    assert answer.status == 200
    assert page.locator(".filters input[name=q]").input_value() == "'%<script>alert(1)</script>"
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    for bad in ("phase=Done", "before=x", "within=1y", "q=" + "x" * 300):
        assert page.goto(f"{console.url}/jobs?{bad}").status == 400, bad
    # A page past the end is an empty page.
    assert page.goto(f"{console.url}/jobs?before=1").status == 200
    assert "No jobs match" in page.locator("main").inner_text()
    # The job's args are shown as text, not markup.
    page.goto(f"{console.url}/jobs/{held}")
    assert "<b>bold</b>" in page.locator("#args").inner_text()
    # Delete: the PgJob goes (exactly the object the row belongs to), then its row.
    page.locator("#phase", has_text="Stopped").wait_for(timeout=15_000)
    page.click("#action-delete")
    page.wait_for_url(re.compile(r"/jobs\?notice="))
    assert "delete requested" in page.locator(".notice").inner_text()
    wait_until(lambda: not exists(kube, namespace, "held"), timeout=15, what="the PgJob deleted")
    wait_until(lambda: not query(database, "SELECT id FROM pgjobs.jobs"), timeout=15, what="the row deleted")
