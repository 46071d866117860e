"""The leader's maintenance round: a failing step is reported (an outage in one line, a bug with
its traceback) and the other steps still run; the TTL deleter never deletes a restarted PgJob."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
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


class TtlKube:
    """The API server as the TTL deleter sees it: one PgJob, deletions recorded."""

    def __init__(self, body: dict[str, Any] | None) -> None:
        self.body = body
        self.deleted: list[tuple[str, str | None]] = []

    async def get_pgjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.body

    async def delete_pgjob(
        self, namespace: str, name: str, uid: str, resource_version: str | None = None
    ) -> bool:
        self.deleted.append((uid, resource_version))
        return True


def pgjob_body(restarts: int) -> dict[str, Any]:
    return {"metadata": {"uid": "u1", "resourceVersion": "41"}, "spec": {"restarts": restarts}}


@pytest.mark.parametrize(("restarts_now", "deleted"), [(0, [("u1", "41")]), (1, [])])
def test_ttl_deletes_only_the_version_it_read_and_never_a_restarted_pgjob(
    restarts_now: int, deleted: list[tuple[str, str]]
) -> None:
    kube = TtlKube(pgjob_body(restarts_now))
    ctx = SimpleNamespace(kube=kube, fence=lambda: None)
    row = {"resource_namespace": "ns", "resource_name": "nightly", "resource_uid": "u1", "restarts": 0}
    asyncio.run(maintenance._delete_expired_one(ctx, row))  # type: ignore[arg-type]
    assert kube.deleted == deleted
