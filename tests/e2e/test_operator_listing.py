"""The leader's paged, metadata-only listing of PgJobs, against the real API server's pages.

The adopt sweep and the orphan clean-up read every PgJob this way (pgjobs.operator.kube); a
page size of 4 over 11 PgJobs makes the API server hand out continue tokens three times.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pgjobs.operator import kube as operator_kube
from tests.e2e.operator_helpers import create, pgjob


def test_every_page_is_read_and_only_identities_are_kept(
    kube: Any, crd: None, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(kube, namespace, *(pgjob(f"page-{i:02d}") for i in range(11)))
    kube.kubectl("delete", "pgjob", "page-03", "-n", namespace, "--wait=false")  # no finalizer: gone
    monkeypatch.setattr(operator_kube, "PAGE", 4)
    requests: list[str] = []
    api = operator_kube.KubeApi.load(str(kube.kubeconfig))
    original = api.request

    async def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        requests.append(path)
        return await original(method, path, *args, **kwargs)

    api.request = counted  # type: ignore[method-assign]

    async def listing() -> list[operator_kube.Identity]:
        try:
            return await api.list_identities([namespace])
        finally:
            await api.close()

    found = asyncio.run(listing())
    assert sorted(identity.name for identity in found) == [f"page-{i:02d}" for i in range(11) if i != 3]
    assert {identity.namespace for identity in found} == {namespace}
    assert len(requests) == 3 and all("limit=4" in path for path in requests)
    assert sum("continue=" in path for path in requests) == 2
