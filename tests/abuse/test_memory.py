"""Memory follows what exists: floods of oversized PgJobs, each refused (Failed) and then deleted,
do not add up in the operator's memory, and the operator stays the same process.

Before kopf's last-handled spec was kept as a digest and dropped with the PgJob, every spec the
operator had ever handled stayed in its memory: this flood alone would have left ~70 MB behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.abuse.helpers import Fleet, wait_failed
from tests.e2e.operator_helpers import GROUP, PLURAL, VERSION, Services, create, pgjob, wait_until

pytestmark = pytest.mark.e2e

#: 80 PgJobs of 0.9 MB args: ~72 MB of specs, each over the operator's 64 KiB limit (a leak of
#: every spec leaves ~85 MB per flood, twice LEFT_BEHIND_MB; bench.kubernetes --memory-only
#: measures larger floods).
COUNT = 80
ARGS_BYTES = 900_000
#: What a second flood may add to what the first left (allocator slack, caches).
LEFT_BEHIND_MB = 40
#: The chart's operator.resources.limits.memory (256Mi), in MB.
CHART_LIMIT_MB = 256 * 1.048576


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def flood(kube: Any, namespace: str, fleet: Fleet, round_number: int) -> float:
    """COUNT oversized PgJobs, each refused; then all deleted. The operator's RSS at the peak."""
    names = [f"big-{round_number}-{number:03d}" for number in range(COUNT)]
    for name in names:
        create(kube, namespace, pgjob(name, "noop", args={"big": "x" * ARGS_BYTES}))
    for name in names:
        wait_failed(kube, namespace, name, "bytes, over the limit", timeout=120)
    peak = rss_mb(fleet.operator.pid)
    kube.kubectl("delete", "pgjobs", "--all", "-n", namespace, "--timeout=120s")
    wait_until(
        lambda: not kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"],
        timeout=120,
        what="every PgJob deleted",
    )
    fleet.check(kube, namespace)
    return peak


def test_floods_of_oversized_pgjobs_do_not_add_up(kube: Any, namespace: str, services: Services) -> None:
    """The allocator may keep the pages of the first flood for reuse; a second flood must reuse
    them instead of adding its own, and the peak must stay within the chart's limit (256Mi)."""
    fleet = Fleet(services)
    fleet.check(kube, namespace)  # warmed up: the operator has handled a PgJob end to end
    before = rss_mb(fleet.operator.pid)
    peaks = [flood(kube, namespace, fleet, 1)]
    after_one = rss_mb(fleet.operator.pid)
    peaks.append(flood(kube, namespace, fleet, 2))
    after_two = rss_mb(fleet.operator.pid)
    figures = (
        f"RSS {before:.0f} MB, peaks {peaks[0]:.0f} and {peaks[1]:.0f} MB,"
        f" after {after_one:.0f} and {after_two:.0f} MB"
    )
    print(figures)
    assert after_two - after_one < LEFT_BEHIND_MB, figures
    assert max(peaks) < CHART_LIMIT_MB, figures
