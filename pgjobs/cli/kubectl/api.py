"""Kubernetes access for the plugin: a small typed wrapper over the untyped official client."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, cast

from pgjobs import crd
from pgjobs.cli.kubectl.errors import PluginError
from pgjobs.cli.kubectl.objects import Json


def default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def api_error_message(exc: Exception) -> str:
    """One line from an ApiException: the API server's own message when it has one."""
    body = getattr(exc, "body", None)
    message = ""
    if isinstance(body, str | bytes):
        with contextlib.suppress(ValueError):
            decoded = json.loads(body)
            if isinstance(decoded, dict):
                message = str(decoded.get("message") or "")
    status = getattr(exc, "status", None)
    if not message:
        message = f"{status} {getattr(exc, 'reason', '') or ''}".strip()
    if status == 404 and "could not find the requested resource" in message:
        message += " (is the PgJob CRD installed? kubectl apply -f crds/pgjobs.dev_pgjobs.yaml)"
    return message.replace("\n", " ")


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn client exceptions into PluginError('<what>: <server message>')."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise PluginError(f"{what}: {api_error_message(exc)}") from None
    except HTTPError as exc:
        raise PluginError(f"{what}: cannot reach the API server: {exc}") from None


class PgJobApi:
    """PgJob calls of one namespace (or, for list and watch, of all), returning plain JSON dicts."""

    def __init__(
        self, api: Any, namespace: str, all_namespaces: bool = False, request_timeout: float | None = None
    ) -> None:
        self._api = api  # kubernetes.client.CustomObjectsApi
        self.namespace = namespace
        self.all_namespaces = all_namespaces
        # kubectl's --request-timeout: 0 (the default) waits as long as the server takes.
        self._limits: dict[str, Any] = {"_request_timeout": request_timeout} if request_timeout else {}

    def _where(self) -> tuple[str, str, str, str]:
        return crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL

    def _listing(self) -> tuple[Any, tuple[str, ...]]:
        """The list call and its leading arguments: of the namespace, or of the whole cluster."""
        if self.all_namespaces:
            return self._api.list_cluster_custom_object, (crd.GROUP, crd.VERSION, crd.PLURAL)
        return self._api.list_namespaced_custom_object, self._where()

    def create(self, body: Json, dry_run: bool = False) -> Json:
        extra = {"dry_run": "All"} if dry_run else {}
        return cast(
            Json, self._api.create_namespaced_custom_object(*self._where(), body, **extra, **self._limits)
        )

    def get(self, name: str) -> Json:
        return cast(Json, self._api.get_namespaced_custom_object(*self._where(), name, **self._limits))

    def get_cronjob(self, name: str) -> Json:
        """A PgCronJob of the namespace (for `trigger`)."""
        where = (crd.GROUP, crd.VERSION, self.namespace, crd.CRON_PLURAL)
        return cast(Json, self._api.get_namespaced_custom_object(*where, name, **self._limits))

    def set_queue_paused(self, queue: str, paused: bool) -> bool:
        """Patch a PgQueue's spec.paused; with no PgQueue yet, create one for a pause (True) and
        do nothing for a resume (False: a queue without one is not paused)."""
        from kubernetes.client.exceptions import ApiException

        where = (crd.GROUP, crd.VERSION, crd.QUEUE_PLURAL)
        patch = {"spec": {"paused": paused}}
        try:
            self._api.patch_cluster_custom_object(*where, queue, patch, **self._limits)
        except ApiException as exc:
            if exc.status != 404:
                raise
            if not paused:
                return False
            body = {
                "apiVersion": crd.API_VERSION,
                "kind": crd.QUEUE_KIND,
                "metadata": {"name": queue},
            } | patch
            self._api.create_cluster_custom_object(*where, body, **self._limits)
        return True

    def list_all(self, selector: str | None = None) -> Json:
        call, where = self._listing()
        return cast(Json, call(*where, label_selector=selector, **self._limits))

    def names_of(self, plural: str) -> list[str]:
        """Names of the namespace's objects of our group (PgJobs, PgCronJobs), or of all
        PgQueues (cluster-scoped), sorted."""
        if plural == crd.QUEUE_PLURAL:
            found = self._api.list_cluster_custom_object(crd.GROUP, crd.VERSION, plural, **self._limits)
        else:
            where = (crd.GROUP, crd.VERSION, self.namespace, plural)
            found = self._api.list_namespaced_custom_object(*where, **self._limits)
        return sorted(str(obj["metadata"]["name"]) for obj in found.get("items") or [])

    def merge_patch(self, name: str, patch: Json) -> Json:
        return cast(
            Json, self._api.patch_namespaced_custom_object(*self._where(), name, patch, **self._limits)
        )

    def json_patch(self, name: str, patch: list[Json]) -> Json:
        return cast(
            Json,
            self._api.patch_namespaced_custom_object(
                *self._where(), name, patch, _content_type="application/json-patch+json", **self._limits
            ),
        )

    def delete_exact(self, name: str, uid: str, resource_version: str) -> None:
        """Delete only if the object is still the version we looked at."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        options = V1DeleteOptions(preconditions=V1Preconditions(uid=uid, resource_version=resource_version))
        self._api.delete_namespaced_custom_object(*self._where(), name, body=options, **self._limits)

    def watch(self, selector: str | None, resource_version: str, timeout: int) -> Iterator[Json]:
        """Raw watch events (dicts with 'type' and 'object') from a resourceVersion."""
        from kubernetes import watch

        untyped: Any = watch  # the client's watch module is not annotated
        watcher = untyped.Watch()
        call, where = self._listing()
        stream = watcher.stream(
            call,
            *where,
            label_selector=selector,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            deserialize=False,
            _request_timeout=timeout + 10,
        )
        for event in stream:
            yield cast(Json, event)


class JobsApi(Protocol):
    """What the verbs need of PgJobApi (the unit tests pass fakes)."""

    namespace: str
    all_namespaces: bool

    def get(self, name: str) -> Json: ...
    def list_all(self, selector: str | None = None) -> Json: ...
    def merge_patch(self, name: str, patch: Json) -> Json: ...
    def json_patch(self, name: str, patch: list[Json]) -> Json: ...
    def delete_exact(self, name: str, uid: str, resource_version: str) -> None: ...
    def watch(self, selector: str | None, resource_version: str, timeout: int) -> Iterator[Json]: ...


def kube_namespace(kubeconfig: str, context: str | None) -> str:
    """The namespace of the chosen (or current) kubeconfig context, else 'default'."""
    from kubernetes import config

    untyped: Any = config  # kubernetes.config is not annotated
    contexts, current = untyped.list_kube_config_contexts(kubeconfig)
    chosen = current
    if context:
        chosen = next((c for c in contexts if c.get("name") == context), None)
        if chosen is None:
            raise PluginError(f"context {context!r} not found in {kubeconfig}")
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return str(namespace or "default")


def connect(opts: argparse.Namespace) -> PgJobApi:
    """A PgJobApi from the global flags (--kubeconfig, --context, --namespace, --request-timeout)."""
    from kubernetes import client

    api_client, namespace = load_client(opts)
    return PgJobApi(
        client.CustomObjectsApi(api_client),
        namespace,
        all_namespaces=bool(getattr(opts, "all_namespaces", False)),
        request_timeout=opts.request_timeout,
    )


def operator_versions(opts: argparse.Namespace) -> list[tuple[str, str]]:
    """(namespace/name, version label) of every pgjobs operator Deployment the user may list."""
    from kubernetes import client

    api_client, _ = load_client(opts)
    extra = {"_request_timeout": opts.request_timeout} if opts.request_timeout else {}
    found: Any = client.AppsV1Api(api_client).list_deployment_for_all_namespaces(
        label_selector="app.kubernetes.io/name=pgjobs,app.kubernetes.io/component=operator", **extra
    )
    return [
        (
            f"{d.metadata.namespace}/{d.metadata.name}",
            (d.metadata.labels or {}).get("app.kubernetes.io/version", "?"),
        )
        for d in found.items
    ]


#: Where a pod's ServiceAccount token and namespace are mounted (in-cluster use, as kubectl's).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def load_client(opts: argparse.Namespace) -> tuple[Any, str]:
    """An ApiClient and the namespace to use, from the global flags; in a pod without a
    kubeconfig, its ServiceAccount (as kubectl does), e.g. the chart's `helm test` Pod."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    kubeconfig = opts.kubeconfig or default_kubeconfig()
    first = kubeconfig.split(os.pathsep)[0]
    configuration = client.Configuration()
    untyped: Any = config  # kubernetes.config is not annotated
    if not Path(first).expanduser().exists():
        if opts.kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise PluginError(
                f"no kubeconfig at {first}: point at a cluster with --kubeconfig FILE or "
                "KUBECONFIG=FILE (`make demo KEEP=1` prints one for the local control plane)"
            )
        try:
            untyped.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise PluginError(f"no kubeconfig, and this pod's ServiceAccount cannot be used: {exc}") from None
        own = SERVICE_ACCOUNT_DIR / "namespace"
        namespace = opts.namespace or (own.read_text().strip() if own.exists() else "default")
        return client.ApiClient(configuration), namespace
    try:
        untyped.load_kube_config(
            config_file=kubeconfig, context=opts.context, client_configuration=configuration
        )
        namespace = opts.namespace or kube_namespace(kubeconfig, opts.context)
    except ConfigException as exc:
        raise PluginError(f"cannot use kubeconfig {kubeconfig}: {exc}") from None
    return client.ApiClient(configuration), namespace
