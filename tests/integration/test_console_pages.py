"""The console's pages over 100,000 jobs: every page of the keyset walk is as fast as the first,
whatever the filter, and a filter's odd characters are searched for literally.

`pgjobs console` runs as a process against a real PostgreSQL and is read over HTTP; the seconds
each page took are printed (pytest -s shows them; docs/console.md quotes a run)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgjobs.states import Priority
from pgjobs.store import connecting, jobs
from pgjobs.store.records import NewJob
from tests import processes

pytestmark = pytest.mark.integration

JOBS = 100_000
PGJOBS = str(Path(sys.executable).with_name("pgjobs"))
#: Seconds a page may take on a busy shared test machine (a page takes ~10-30 ms alone).
PAGE_BUDGET = 1.0


def fill(database: connecting.DatabaseSettings) -> None:
    async def run() -> None:
        async with await connecting.connect(database) as conn:
            for queue, count in (("bulk", JOBS - 100), ("rare", 100)):
                job = NewJob(task="noop", args={"n": "a_b%c"}, queue=queue, priority=Priority.REGULAR)
                await jobs.enqueue(conn, job, count=count)
            await conn.execute("ANALYZE pgjobs.jobs")

    asyncio.run(run())


@pytest.fixture
def console_url(
    database: connecting.DatabaseSettings, database_env: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    fill(database)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = database_env | {"KUBECONFIG": os.devnull}
    log = (tmp_path / "console.log").open("wb")
    process = subprocess.Popen(
        [PGJOBS, "console", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_for(lambda: _answers(url), 30, what="the console")
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2):
            return True
    except OSError:
        return False


def timed(url: str) -> tuple[float, str]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = answer.read().decode()
    return time.perf_counter() - start, body


def ids(body: str) -> list[int]:
    return [int(found) for found in re.findall(r'data-job="(\d+)"', body)]


def test_every_page_of_100000_jobs_is_fast(console_url: str) -> None:
    times: dict[str, float] = {}
    timed(f"{console_url}/jobs")  # the pool's first connection
    seconds, body = timed(f"{console_url}/jobs")
    times["newest page"] = seconds
    page = ids(body)
    assert page == list(range(JOBS, JOBS - 50, -1))
    # Walk on by the "Older" link: the next page starts where this one ended.
    older = re.search(r'href="([^"]+)" rel="next"', body)
    assert older is not None
    seconds, body = timed(console_url + older.group(1).replace("&amp;", "&"))
    times["second page"] = seconds
    assert ids(body)[0] == page[-1] - 1
    seconds, body = timed(f"{console_url}/jobs?before=60")
    times["last page"] = seconds
    assert ids(body) == list(range(59, 9, -1))
    seconds, body = timed(f"{console_url}/jobs?before=1")
    times["past the end"] = seconds
    assert ids(body) == [] and "No jobs match" in body
    # Filters: a queue of 100 among 100,000, a phase no job has, text that no args hold.
    seconds, body = timed(f"{console_url}/jobs?queue=rare")
    times["queue=rare (100 of 100,000)"] = seconds
    assert len(ids(body)) == 50
    seconds, body = timed(f"{console_url}/jobs?phase=Failed")
    times["phase=Failed (none)"] = seconds
    assert ids(body) == []
    seconds, body = timed(f"{console_url}/jobs?q=" + urllib.parse.quote("%<nowhere>"))
    times["args text, no match"] = seconds
    assert ids(body) == []
    # LIKE's wildcards are searched for as text: "a_b%c" is in every job's args, "a%c" in none.
    assert len(ids(timed(f"{console_url}/jobs?q=" + urllib.parse.quote("a_b%c"))[1])) == 50
    assert ids(timed(f"{console_url}/jobs?q=" + urllib.parse.quote("a%c"))[1]) == []
    for what, spent in times.items():
        print(f"{what}: {spent * 1000:.0f} ms")
    slow = {what: spent for what, spent in times.items() if spent > PAGE_BUDGET}
    assert slow == {}, f"pages slower than {PAGE_BUDGET}s at {JOBS} jobs"
