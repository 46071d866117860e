"""The Kubernetes calls the operator makes itself (kopf does the watching): status, events, lists, deletes.

The official client is synchronous; callers run these methods in threads (`asyncio.to_thread`).
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Iterable
from typing import Any

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

GROUP = "pgjobs.dev"
VERSION = "v1alpha1"
PLURAL = "pgjobs"
KIND = "PgJob"
COMPONENT = "pgjobs-operator"

Json = dict[str, Any]


class KubeApi:
    """PgJob status patches, Events, listing and deletion through one API client."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self._custom: Any = kubernetes.client.CustomObjectsApi(api_client)
        self._core: Any = kubernetes.client.CoreV1Api(api_client)
        self._instance = socket.gethostname()

    @classmethod
    def load(cls, kubeconfig: str | None) -> KubeApi:
        configuration = load_configuration(kubeconfig)
        # Status writes run in a few threads at once; urllib3's default pool of 4 would serialise.
        configuration.connection_pool_maxsize = 16
        return cls(kubernetes.client.ApiClient(configuration))

    def patch_status(self, namespace: str, name: str, status: Json, uid: str | None = None) -> bool:
        """Merge-patch the status subresource; False when the PgJob (with this uid) is gone."""
        # The uid in the patch is a precondition: a new PgJob that reuses the name of a deleted
        # one is refused (409) instead of receiving the old job's status.
        body: Json = {"metadata": {"uid": uid}, "status": status} if uid else {"status": status}
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    def post_event(self, involved: Json, kind: str, reason: str, message: str) -> None:
        """A core/v1 Event about a PgJob, as `kubectl describe pgjob` shows them."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, **involved},
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._core.create_namespaced_event(involved["namespace"], body)

    def list_uids(self, namespaces: Iterable[str]) -> set[str]:
        """The uids of all PgJobs (in the given namespaces; none given: in all)."""
        chosen = list(namespaces)
        if not chosen:
            listing = self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            return {item["metadata"]["uid"] for item in listing.get("items", [])}
        uids: set[str] = set()
        for namespace in chosen:
            listing = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
            uids |= {item["metadata"]["uid"] for item in listing.get("items", [])}
        return uids

    def delete_pgjob(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the PgJob if it is still the one with this uid; False when it is gone."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid),
            propagation_policy="Background",
        )
        try:
            self._custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body=options
            )
        except ApiException as error:
            if error.status in (404, 409):  # gone, or a new PgJob with the same name
                return False
            raise
        return True


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
