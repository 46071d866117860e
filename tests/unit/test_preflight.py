"""The operator's preflight: each way the API server can be wrong for it gives one line."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pgjobs.operator import kube, preflight

CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "pgjobs.dev_pgjobs.yaml").read_text())


class Answering:
    """Answers the CRD listing with `answer`, or raises it."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def request(self, method: str, path: str, **_: Any) -> Any:
        self.asked.append(path)
        assert path == preflight.CRD_PATH
        if isinstance(answer := self.answer, BaseException):
            raise answer
        return answer


def check(answer: Any) -> str:
    with pytest.raises(preflight.CannotStart) as raised:
        asyncio.run(preflight.check_api(Answering(answer), "https://10.0.0.1:6443"))  # type: ignore[arg-type]
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_an_unreachable_api_server() -> None:
    message = check(aiohttp.ClientConnectionError("Connect call failed"))
    assert message.startswith("cannot reach the Kubernetes API server at https://10.0.0.1:6443")
    assert "--kubeconfig" in message


def test_refused_credentials() -> None:
    assert "credentials or RBAC" in check(kube.KubeError("GET", "/apis", 403, "forbidden"))


def test_no_crd() -> None:
    assert "is not installed: kubectl apply" in check({"items": []})


def test_an_older_crd() -> None:
    older = copy.deepcopy(CRD)
    schema = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    del schema["status"]["properties"]["jobId"]
    message = check({"items": [older]})
    assert "older than this operator (it lacks status.jobId)" in message and "kubectl apply" in message


def test_the_current_crd_passes() -> None:
    api = Answering({"items": [CRD]})
    assert asyncio.run(preflight.check_api(api, "here")) is None  # type: ignore[arg-type]
    assert api.asked == [preflight.CRD_PATH]  # it looked, and found nothing to refuse
