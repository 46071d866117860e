"""Changes to one PgJob as the plugin makes them, shared with the web console (pgjobs.console).

Stop and start are a merge patch of spec.stopped; a restart increments spec.restarts with a JSON
patch that tests the value it read first; a delete names the uid and resourceVersion it saw.
Errors come back as PluginError with the API server's message.
"""

from __future__ import annotations

from pgjobs.cli.kubectl.api import JobsApi, api_errors
from pgjobs.cli.kubectl.errors import PluginError
from pgjobs.cli.kubectl.objects import restart_patch, stopped_patch

# Restart retries: each retry means somebody else changed spec.restarts
# between our read and our patch, which is rare; a bound keeps a bug from
# spinning forever.
RESTART_ATTEMPTS = 5


def set_stopped(jobs: JobsApi, name: str, stopped: bool) -> None:
    """Ask for a stop (True) or a start (False) of one PgJob."""
    verb = "stop" if stopped else "start"
    with api_errors(f"cannot {verb} PgJob {name!r}"):
        jobs.merge_patch(name, stopped_patch(stopped))


def lost_race(jobs: JobsApi, name: str, exc: Exception, tested: int | None) -> bool:
    """Whether a refused restart patch failed only because spec.restarts moved on.

    A failed JSON patch `test` comes back as a bare 422 "Invalid" without
    details, like other refusals; the reliable sign is the value itself.
    """
    if getattr(exc, "status", None) != 422:
        return False
    now: object = jobs.get(name).get("spec", {}).get("restarts")
    return now != tested


def restart_one(jobs: JobsApi, name: str) -> int:
    """Increment spec.restarts of one PgJob; returns the new value."""
    from kubernetes.client.exceptions import ApiException

    what = f"cannot restart PgJob {name!r}"
    for _ in range(RESTART_ATTEMPTS):
        with api_errors(what):
            current = jobs.get(name).get("spec", {}).get("restarts")
            try:
                updated = jobs.json_patch(name, restart_patch(current))
            except ApiException as exc:
                if lost_race(jobs, name, exc, current):
                    continue  # someone restarted concurrently: count on top of theirs
                raise
        return int(updated["spec"]["restarts"])
    raise PluginError(f"{what}: spec.restarts kept changing, try again")


def delete_exact(jobs: JobsApi, name: str, uid: str) -> None:
    """Delete the PgJob `name` only if it is still the object with this uid (not a new PgJob of
    the same name), and only as it is now (its resourceVersion read just before)."""
    with api_errors(f"cannot delete PgJob {name!r}"):
        current = jobs.get(name)["metadata"]
        if current.get("uid") != uid:
            raise PluginError(f"cannot delete PgJob {name!r}: it is another object now (uid changed)")
        jobs.delete_exact(name, uid, str(current["resourceVersion"]))
