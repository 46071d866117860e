"""What the console's buttons do to a job: stop, start, restart, delete, and the bulk restart.

A job made from a PgJob is changed through its PgJob, exactly as `kubectl pgjobs` changes it
(Kubernetes owns intent, and the operator would undo a change made to its row); a job enqueued
without one (`pgjobs enqueue`, the producer API) is changed in the store, as `pgjobs stop` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pgjobs.cli.kubectl.api import PgJobApi
from pgjobs.cli.kubectl.errors import PluginError
from pgjobs.cli.kubectl.patching import delete_exact, restart_one, set_stopped
from pgjobs.console.kube import Kubernetes
from pgjobs.states import JobState
from pgjobs.store import jobs
from pgjobs.store.queries import Connection

#: The most Failed jobs one bulk restart restarts (the rest: press it again).
BULK_LIMIT = 500


class ActionError(Exception):
    """An action that could not be done; its message is shown on the page."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A job as far as an action needs it."""

    id: int
    state: JobState
    resource_namespace: str | None = None
    resource_name: str | None = None
    resource_uid: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Target:
        return cls(
            id=int(row["id"]),
            state=JobState(row["state"]),
            resource_namespace=row["resource_namespace"],
            resource_name=row["resource_name"],
            resource_uid=row["resource_uid"],
        )

    @property
    def pgjob(self) -> str | None:
        """'namespace/name' of its PgJob, None for a job without one."""
        if self.resource_uid and self.resource_namespace and self.resource_name:
            return f"{self.resource_namespace}/{self.resource_name}"
        return None


def _stop(api: PgJobApi, name: str, uid: str) -> None:
    set_stopped(api, name, True)


def _start(api: PgJobApi, name: str, uid: str) -> None:
    set_stopped(api, name, False)


def _restart(api: PgJobApi, name: str, uid: str) -> None:
    restart_one(api, name)


ON_PGJOB: dict[str, Callable[[PgJobApi, str, str], None]] = {
    "stop": _stop,
    "start": _start,
    "restart": _restart,
    "delete": delete_exact,
}
ON_ROW: dict[str, Callable[[Connection, int], Awaitable[bool]]] = {
    "stop": jobs.stop,
    "start": jobs.start,
    "restart": jobs.restart,
    "delete": jobs.delete,
}
VERBS = tuple(ON_ROW)


async def run(verb: str, target: Target, conn: Connection, kube: Kubernetes | None) -> str:
    """Do `verb` to one job; what was done, for the page. ActionError when it cannot be done."""
    if target.pgjob is None:
        if not await ON_ROW[verb](conn, target.id):
            raise ActionError(f"cannot {verb} job {target.id}: it is {target.state.phase}")
        return f"job {target.id}: {verb} done"
    if kube is None:
        raise ActionError(
            f"cannot {verb} PgJob {target.pgjob}: the console has no Kubernetes access (see its log)"
        )
    assert target.resource_namespace and target.resource_name and target.resource_uid
    api = kube.pgjobs(target.resource_namespace)
    try:
        await asyncio.to_thread(ON_PGJOB[verb], api, target.resource_name, target.resource_uid)
    except PluginError as error:
        raise ActionError(str(error)) from None
    return f"PgJob {target.pgjob}: {verb} requested"


async def restart_failed(
    conn: Connection, kube: Kubernetes | None, parameters: Mapping[str, Any]
) -> tuple[int, list[str]]:
    """Restart the Failed jobs matching a filter's `parameters` (at most BULK_LIMIT): how many
    were restarted, and the reason of each that was not."""
    params = {**parameters, "state": JobState.FAILED.value, "cursor": None, "limit": BULK_LIMIT}
    restarted, problems = 0, []
    for row in await jobs.page(conn, params):
        try:
            await run("restart", Target.from_row(row), conn, kube)
        except ActionError as error:
            problems.append(str(error))
        else:
            restarted += 1
    return restarted, problems
