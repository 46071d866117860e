"""PgJobs and database outages: what the operator says during one, and the PgJobs that older
operators failed for one.

An outage (`pgjobs.store.connecting.is_outage`) never fails a PgJob: its handler retries until the
database takes writes again, and the PgJob gets one Warning Event `DatabaseUnavailable` per
outage. Older operators turned an outage that outlasted three retries into
`Failed: invalid PgJob: the operator failed to apply it: <error>`, with no row; those PgJobs
are given their row, and run, like any PgJob that has none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import psycopg

from pgjobs.store import connecting

#: The reason of the Warning Event a PgJob gets when the database cannot take its spec.
DATABASE_UNAVAILABLE = "DatabaseUnavailable"

#: The message older versions set when applying a spec raised; group 1 is the exception's class.
_OLD_FAILURE = re.compile(r"^invalid PgJob: the operator failed to apply it: (\w+): ")


def unavailable_text(error: BaseException) -> str:
    """The Event's text: what happened and that nothing is needed from the user."""
    return f"the database cannot take this PgJob now: {connecting.summary(error)}; it is applied once it can"


def failed_by_an_outage(body: Mapping[str, Any]) -> bool:
    """Whether an older operator failed this PgJob for a database outage before it had a row."""
    status = body.get("status") or {}
    if status.get("phase") != "Failed" or status.get("jobId") is not None:
        return False
    found = _OLD_FAILURE.match(str(status.get("message") or ""))
    return found is not None and _is_outage_class(found.group(1))


def _is_outage_class(name: str) -> bool:
    error_class = getattr(psycopg.errors, name, None) or getattr(psycopg, name, None)
    if not isinstance(error_class, type) or not issubclass(error_class, psycopg.Error):
        return False
    if issubclass(error_class, psycopg.OperationalError):
        return True
    sqlstate = getattr(error_class, "sqlstate", None)
    return isinstance(sqlstate, str) and connecting.is_outage_state(sqlstate)
