"""How the leader's maintenance round reports a failing step: an outage in one line, a bug with
its traceback, and the other steps still run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from pgjobs.operator import maintenance


def test_an_outage_is_one_line_and_a_bug_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    async def api_server_away(ctx: Any) -> None:
        ran.append("away")
        raise aiohttp.ClientConnectionError("Cannot connect to host 127.0.0.1:6443")

    async def broken(ctx: Any) -> None:
        ran.append("broken")
        raise ValueError("a bug")

    async def fine(ctx: Any) -> None:
        ran.append("fine")

    monkeypatch.setattr(maintenance, "STEPS", (api_server_away, broken, fine))
    with caplog.at_level(logging.WARNING, logger=maintenance.logger.name):
        asyncio.run(maintenance.run_once(object()))  # type: ignore[arg-type]
    assert ran == ["away", "broken", "fine"]
    away, bug = caplog.records
    assert (
        away.getMessage() == "maintenance step api_server_away failed: Cannot connect to host 127.0.0.1:6443"
    )
    assert away.exc_info is None
    assert bug.getMessage() == "maintenance step broken failed" and bug.exc_info is not None
