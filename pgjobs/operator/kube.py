"""The Kubernetes calls the operator makes itself (kopf does the watching): status, events, lists, deletes.

They go through one aiohttp session on the operator's event loop (aiohttp comes with kopf). The
official client is synchronous: run in threads, its status patches and Events cost about a
quarter of the operator's CPU under a burst (thread hand-offs, urllib3, its model layer). The
credentials still come from the official client's loaders (`load_configuration`): kubeconfig
with client certificates or tokens, or the in-cluster ServiceAccount, whose token the loader
re-reads when it rotates (`Configuration.refresh_api_key_hook`, run for every request here).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
import kubernetes

from pgjobs import crd

COMPONENT = "pgjobs-operator"
#: Connections at once: the status sync's 16 writers plus room for Events and maintenance.
CONNECTIONS = 24
REQUEST_TIMEOUT = 30.0

Json = dict[str, Any]


class KubeError(Exception):
    """The API server answered a request with an error status."""

    def __init__(self, method: str, path: str, status: int, reason: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}")
        self.status = status


class StaleStatus(Exception):
    """The API server refused a status older than the one it stores (the CRD's syncedAt rule)."""


#: What the API server says when a write's uid precondition fails: the object was replaced.
UID_PRECONDITION_FAILED = "Precondition failed: UID in precondition"
#: The message of the PgJob CRD's rule on status.syncedAt (crds/pgjobs.dev_pgjobs.yaml).
STALE_STATUS_MESSAGE = "a status older than the one stored"


class KubeApi:
    """PgJob status patches, Events, listing and deletion through one aiohttp session."""

    def __init__(self, configuration: Any) -> None:
        self._configuration = configuration
        self._host = str(configuration.host).rstrip("/")
        self._ssl = ssl_context(configuration)
        self._session: aiohttp.ClientSession | None = None
        self._instance = socket.gethostname()

    @property
    def host(self) -> str:
        """The API server's address, for messages."""
        return self._host

    @classmethod
    def load(cls, kubeconfig: str | None) -> KubeApi:
        return cls(load_configuration(kubeconfig))

    def _session_now(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp wants to be created inside the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONNECTIONS, ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, content_type: str | None, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        # Called per request: the hook behind it re-reads a rotated ServiceAccount token.
        token = self._configuration.get_api_key_with_prefix(
            "BearerToken"
        ) or self._configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> Json:
        """One call; the decoded JSON answer, or KubeError for an error status."""
        data = json.dumps(body, separators=(",", ":")) if body is not None else None
        headers = self._headers(content_type or ("application/json" if data is not None else None), accept)
        async with self._session_now().request(
            method,
            self._host + path,
            data=data,
            headers=headers,
            proxy=self._configuration.proxy or None,
            server_hostname=self._configuration.tls_server_name or None,
        ) as response:
            if response.status >= 400:
                raise KubeError(method, path, response.status, (await response.text())[:500])
            answer: Json = await response.json(content_type=None)
            return answer

    async def patch_status(self, namespace: str, name: str, status: Json, uid: str | None = None) -> bool:
        """Merge-patch the status subresource; False when the PgJob (with this uid) is gone."""
        return await self._patch_status(f"{pgjobs_path(namespace)}/{quote(name)}/status", status, uid)

    async def patch_cronjob_status(self, namespace: str, name: str, status: Json, uid: str) -> bool:
        """Merge-patch a PgCronJob's status subresource; False when it (with this uid) is gone."""
        path = f"{objects_path(namespace, crd.CRON_PLURAL)}/{quote(name)}/status"
        return await self._patch_status(path, status, uid)

    async def _patch_status(self, path: str, status: Json, uid: str | None) -> bool:
        # The uid in the patch is meant as a precondition (409 when the name now belongs to a new
        # object); the API server checks it on some paths and ignores metadata in others.
        body: Json = {"metadata": {"uid": uid}, "status": status} if uid else {"status": status}
        try:
            await self.request("PATCH", path, body, "application/merge-patch+json")
        except KubeError as error:
            if error.status == 404 or (error.status == 409 and UID_PRECONDITION_FAILED in str(error)):
                return False
            # Any other 409 is a write conflict under contention (the API server gave up
            # retrying it): raised, so the write is tried again, never taken as done.
            if error.status == 422 and STALE_STATUS_MESSAGE in str(error):
                raise StaleStatus(str(error)) from error
            raise
        return True

    async def post_event(
        self, involved: Json, kind: str, reason: str, message: str, involved_kind: str = crd.KIND
    ) -> None:
        """A core/v1 Event about a PgJob (or a PgCronJob), as `kubectl describe` shows them."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
            "involvedObject": {"apiVersion": crd.API_VERSION, "kind": involved_kind, **involved},
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": f"{crd.GROUP}/operator",
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.request("POST", f"/api/v1/namespaces/{quote(involved['namespace'])}/events", body)

    async def list_identities(self, namespaces: Iterable[str]) -> list[Identity]:
        """Who every PgJob is (in the given namespaces; none given: in all), read as metadata
        only and a page at a time, so tens of thousands of PgJobs never sit in memory at once."""
        paths = [pgjobs_path(namespace) for namespace in namespaces] or [
            f"/apis/{crd.API_VERSION}/{crd.PLURAL}"
        ]
        found: list[Identity] = []
        for path in paths:
            token = ""
            while True:
                query = f"?limit={PAGE}" + (f"&continue={quote(token)}" if token else "")
                page = await self.request("GET", path + query, accept=METADATA_ONLY)
                # An empty metadata-only list comes back as `"items": null`.
                found += [Identity.of(item["metadata"]) for item in page.get("items") or []]
                token = (page.get("metadata") or {}).get("continue") or ""
                if not token:
                    break
        return found

    async def list_objects(self, plural: str, namespaces: Iterable[str], selector: str = "") -> list[Json]:
        """Whole objects of our group (PgCronJobs, the PgJobs they own), a page at a time."""
        paths = [objects_path(namespace, plural) for namespace in namespaces] or [
            f"/apis/{crd.API_VERSION}/{plural}"
        ]
        where = f"&labelSelector={quote(selector)}" if selector else ""
        found: list[Json] = []
        for path in paths:
            token = ""
            while True:
                query = f"?limit={PAGE}{where}" + (f"&continue={quote(token)}" if token else "")
                page = await self.request("GET", path + query)
                found += page.get("items") or []
                token = (page.get("metadata") or {}).get("continue") or ""
                if not token:
                    break
        return found

    async def create_object(self, plural: str, body: Json) -> Json | None:
        """Create a cluster-scoped object of our group (a PgQueue); None when one of that name
        exists already."""
        try:
            return await self.request("POST", f"/apis/{crd.API_VERSION}/{plural}", body)
        except KubeError as error:
            if error.status == 409:
                return None
            raise

    async def patch_object_status(self, plural: str, name: str, status: Json, uid: str) -> bool:
        """Merge-patch a cluster-scoped object's status; False when it (with this uid) is gone."""
        return await self._patch_status(f"/apis/{crd.API_VERSION}/{plural}/{quote(name)}/status", status, uid)

    async def create_pgjob(self, body: Json) -> Json | None:
        """Create a PgJob; None when one of that name exists already (AlreadyExists decides
        between replicas that create the same scheduled run)."""
        try:
            return await self.request("POST", pgjobs_path(body["metadata"]["namespace"]), body)
        except KubeError as error:
            if error.status == 409:
                return None
            raise

    async def get_pgjob(self, namespace: str, name: str) -> Json | None:
        """One PgJob, None when it is gone."""
        try:
            return await self.request("GET", f"{pgjobs_path(namespace)}/{quote(name)}")
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def delete_pgjob(
        self, namespace: str, name: str, uid: str, resource_version: str | None = None
    ) -> bool:
        """Delete the PgJob if it is still the one with this uid (and, given one, still at this
        resourceVersion); False when it is gone or changed."""
        preconditions = {"uid": uid} | ({"resourceVersion": resource_version} if resource_version else {})
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": preconditions,
            "propagationPolicy": "Background",
        }
        try:
            await self.request("DELETE", f"{pgjobs_path(namespace)}/{quote(name)}", options)
        except KubeError as error:
            if error.status in (404, 409):  # gone, or a new PgJob with the same name
                return False
            raise
        return True


@dataclasses.dataclass(frozen=True)
class Identity:
    """A PgJob's identity and age, without its spec and status."""

    uid: str
    namespace: str
    name: str
    created: datetime.datetime
    deleting: bool

    @classmethod
    def of(cls, meta: Json) -> Identity:
        return cls(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            created=datetime.datetime.fromisoformat(meta["creationTimestamp"]),
            deleting=bool(meta.get("deletionTimestamp")),
        )


#: Objects per page of a listing.
PAGE = 500
#: A list of objects' metadata only (the API server's PartialObjectMetadataList).
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"


def timestamp(moment: datetime.datetime) -> str:
    """A time as the Kubernetes API writes them (RFC 3339, UTC, whole seconds)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pgjobs_path(namespace: str) -> str:
    return objects_path(namespace, crd.PLURAL)


def objects_path(namespace: str, plural: str) -> str:
    return f"/apis/{crd.API_VERSION}/namespaces/{quote(namespace)}/{plural}"


def ssl_context(configuration: Any) -> ssl.SSLContext:
    """TLS as the official client does it: the cluster CA, a client certificate, or no checks."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def load_configuration(kubeconfig: str | None) -> Any:
    """From --kubeconfig, else in-cluster, else KUBECONFIG / ~/.kube/config (as kubectl)."""
    configuration: Any = kubernetes.client.Configuration()
    config: Any = kubernetes.config
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # The client computes its default path at import: read KUBECONFIG now instead.
        default = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        config.load_kube_config(config_file=default, client_configuration=configuration)
    return configuration


def connection_info(kubeconfig: str | None, trust_env: bool) -> kopf.ConnectionInfo:
    """kopf's credentials from the same sources as ours (called again when a token expires)."""
    configuration = load_configuration(kubeconfig)
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=trust_env,
    )
