"""The leader's paged, metadata-only listing of PgJobs (the API server replaced by a fake)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from pgjobs.operator import kube


class PagedServer:
    """Serves `count` PgJobs' metadata `page` at a time, with continue tokens, as the API does."""

    def __init__(self, count: int, page: int) -> None:
        self.count, self.page = count, page
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, *_: Any, accept: str = "", **__: Any) -> Any:
        self.calls.append((path, accept))
        start = int(path.partition("continue=")[2] or 0)
        end = min(self.count, start + self.page)
        items = [
            {
                "metadata": {
                    "uid": f"uid-{i}",
                    "namespace": "ns",
                    "name": f"job-{i}",
                    "creationTimestamp": "2026-11-28T20:00:00Z",
                    **({"deletionTimestamp": "2026-11-28T20:01:00Z"} if i == 3 else {}),
                }
            }
            for i in range(start, end)
        ]
        # As the API server sends an empty metadata-only list: `"items": null`.
        return {"items": items or None, "metadata": {"continue": str(end) if end < self.count else ""}}


def test_every_page_is_read_and_only_identities_are_kept() -> None:
    server = PagedServer(count=1203, page=kube.PAGE)
    api = object.__new__(kube.KubeApi)
    api.request = server.request  # type: ignore[method-assign]
    found = asyncio.run(api.list_identities(["ns"]))
    assert [p.uid for p in found] == [f"uid-{i}" for i in range(1203)]
    assert len(server.calls) == 3 and all(accept == kube.METADATA_ONLY for _, accept in server.calls)
    assert all(f"limit={kube.PAGE}" in path for path, _ in server.calls)
    assert [p.deleting for p in found[:5]] == [False, False, False, True, False]
    assert found[0].created == datetime.datetime(2026, 11, 28, 20, 0, tzinfo=datetime.UTC)


def test_an_empty_listing_is_empty() -> None:
    api = object.__new__(kube.KubeApi)
    api.request = PagedServer(count=0, page=kube.PAGE).request  # type: ignore[method-assign]
    assert asyncio.run(api.list_identities(["ns"])) == []
