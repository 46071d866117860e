"""The console's Kubernetes access: the plugin's PgJob API for any namespace, from the console's
kubeconfig or, in a pod, its ServiceAccount (pgjobs.cli.kubectl.api.load_client)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pgjobs.cli.kubectl.api import PgJobApi, load_client
from pgjobs.cli.kubectl.errors import PluginError
from pgjobs.console.settings import ConsoleSettings

logger = logging.getLogger(__name__)

#: Seconds one API call may take before the action is reported as failed.
REQUEST_TIMEOUT = 10.0


class Kubernetes:
    """PgJobs of every namespace through one API client."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)

    def pgjobs(self, namespace: str) -> PgJobApi:
        return PgJobApi(self._custom, namespace, request_timeout=REQUEST_TIMEOUT)


def connect(settings: ConsoleSettings) -> Kubernetes | None:
    """The API access, or None (logged) when there is none: the pages still work then, and
    actions on jobs with a PgJob say why they cannot be done."""
    opts = argparse.Namespace(kubeconfig=settings.kubeconfig, context=settings.context or None, namespace="")
    try:
        api_client, _ = load_client(opts)
    except PluginError as error:
        logger.warning("No Kubernetes access, so no actions on PgJobs: %s", error)
        return None
    return Kubernetes(api_client)
