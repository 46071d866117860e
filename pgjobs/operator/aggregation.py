"""What every API the operator serves through the API server's aggregation layer answers alike:
its discovery document and its errors (a Kubernetes `Status`)."""

from __future__ import annotations

from aiohttp import web

from pgjobs.operator import kube


def discovery(group: str, version: str, resource: str, kind: str) -> kube.Json:
    """The APIResourceList of a group version serving one namespaced resource, read with `get`."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": [
            {"name": resource, "singularName": "", "namespaced": True, "kind": kind, "verbs": ["get"]}
        ],
    }


def status(code: int, message: str, reason: str = "") -> web.Response:
    """An error as the API server words one (kubectl and the kubernetes client print `message`)."""
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}
    if reason:
        body["reason"] = reason
    return web.json_response(body, status=code)
