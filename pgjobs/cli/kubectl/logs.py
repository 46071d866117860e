"""`kubectl pgjobs logs NAME`: a PgJob's logs through the operator's aggregated API.

The plugin never talks to PostgreSQL: it asks the API server for
`/apis/logs.pgjobs.dev/v1alpha1/namespaces/NS/pgjoblogs/NAME` with the kubeconfig's credentials
(`pgjobs.operator.logsapi` serves it, to whoever may get the PgJob), pages on with `?after=`,
and with -f asks again every FOLLOW_INTERVAL until the PgJob is finished.
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any, TextIO, cast

from pgjobs.cli.kubectl.api import api_error_message, load_client
from pgjobs.cli.kubectl.errors import EXIT_OK, PluginError
from pgjobs.cli.kubectl.objects import Json
from pgjobs.cli.loglines import line_text

GROUP_VERSION = "logs.pgjobs.dev/v1alpha1"
#: Seconds between two reads while following a running PgJob.
FOLLOW_INTERVAL = 1.0
_NOT_SERVED = (
    "the logs API (logs.pgjobs.dev) is not served by this cluster: install pgjobs with its chart "
    "(operator.logsApi.enabled, the default)"
)


def path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/pgjoblogs/{name}"


def cmd_logs(opts: argparse.Namespace, out: TextIO) -> int:
    api_client, namespace = load_client(opts)
    after: str | None = None
    while True:
        page = _read(api_client, opts, namespace, after)
        for line in page.get("lines") or []:
            at = datetime.datetime.fromisoformat(str(line["time"]))
            text = line_text(int(line["attempt"]), at, str(line["level"]), str(line["message"]))
            print(text, file=out, flush=True)
        after = str(page.get("next") or after or "")
        if page.get("more"):
            continue
        if not opts.follow or page.get("finished"):
            return EXIT_OK
        time.sleep(FOLLOW_INTERVAL)


def _read(api_client: Any, opts: argparse.Namespace, namespace: str, after: str | None) -> Json:
    """One page of the PgJob's lines; a refusal or an error is one line (PluginError)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    query = [("attempt", str(opts.attempt))] if opts.attempt is not None else []
    if after:
        query.append(("after", after))
    what = f"cannot read the logs of PgJob {namespace}/{opts.name}"
    try:
        request = api_client.param_serialize(
            "GET",
            path(namespace, opts.name),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = api_client.call_api(*request, _request_timeout=opts.request_timeout or None)
        response.read()
        answer = api_client.response_deserialize(response, {"200": "object"}).data
    except ApiException as exc:
        message = api_error_message(exc)
        if exc.status == 404 and "could not find the requested resource" in message:
            message = _NOT_SERVED
        raise PluginError(f"{what}: {message}") from None
    except HTTPError as exc:
        raise PluginError(f"{what}: cannot reach the API server: {exc}") from None
    return cast(Json, answer)
