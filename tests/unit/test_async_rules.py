"""Rules the async code keeps, checked over the package's source."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pgjobs"


def test_no_asyncio_wait_for_in_the_package() -> None:
    """On Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives as its inner call
    finishes: a worker's heartbeat loop then kept running after the worker ended, and the
    process never exited. `asyncio.timeout` does not; use it."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "wait_for(" in line and not line.lstrip().startswith("#")
    ]
    assert offenders == []
