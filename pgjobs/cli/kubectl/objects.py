"""PgJob objects as plain JSON: the manifest `submit` creates, the patches of `stop`, `start`
and `restart`, and which objects `prune` deletes (unit-tested without a cluster)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pgjobs import crd
from pgjobs.cli.kubectl.errors import EXIT_USAGE, PluginError
from pgjobs.states import FINISHED_STATES, JobState, Priority

Json = dict[str, Any]

#: As `submit --priority` offers them: highest first.
PRIORITIES = tuple(priority.label for priority in sorted(Priority, reverse=True))
FINISHED_PHASES = frozenset(state.phase for state in FINISHED_STATES)
DEFAULT_PRUNE_PHASES = (JobState.COMPLETED.phase, JobState.FAILED.phase)


def parse_args_json(text: str) -> Json:
    """The --args value as a JSON object, or a PluginError saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PluginError(f"--args is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise PluginError("--args must be a JSON object, e.g. '{\"seconds\": 10}'", EXIT_USAGE)
    return value


# Kubernetes' label syntax: an optional DNS-subdomain prefix and a name of up to 63 characters.
_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def valid_label(key: str, value: str) -> bool:
    """Whether KEY=VALUE is a label the API server accepts."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        return False
    return bool(name) and all(_LABEL_NAME.fullmatch(part) for part in (name, value))


def generate_name_for(task: str) -> str:
    """A valid metadata.generateName prefix derived from a task name."""
    # Task names allow upper case, '_', '.', ':' which object names do not.
    base = re.sub(r"[^a-z0-9-]+", "-", task.lower()).strip("-")[:50].strip("-")
    return f"{base or 'pgjob'}-"


def build_manifest(
    task: str,
    *,
    args: Json,
    priority: str | None = None,
    queue: str | None = None,
    max_attempts: int | None = None,
    timeout_seconds: int | None = None,
    ttl_seconds: int | None = None,
    name: str | None = None,
    generate_name: str | None = None,
    labels: dict[str, str] | None = None,
    run_at: str | None = None,
    unique_key: str | None = None,
) -> Json:
    """The PgJob object `submit` creates; unset options are left to CRD defaults."""
    spec: Json = {"task": task, "args": args}
    optional = {
        "priority": priority,
        "queue": queue,
        "maxAttempts": max_attempts,
        "timeoutSeconds": timeout_seconds,
        "ttlSecondsAfterFinished": ttl_seconds,
        "runAt": run_at,
        "uniqueKey": unique_key,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    metadata: Json = {"name": name} if name else {"generateName": generate_name or generate_name_for(task)}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": crd.API_VERSION, "kind": crd.KIND, "metadata": metadata, "spec": spec}


def stopped_patch(stopped: bool) -> Json:
    """Merge patch for stop/start."""
    return {"spec": {"stopped": stopped}}


def restart_patch(current: int | None) -> list[Json]:
    """JSON patch that increments spec.restarts only if it still equals `current`.

    The `test` op makes the API server refuse the patch when another client
    restarted in between, so two concurrent restarts give two new runs
    instead of silently collapsing into one.
    """
    if current is None:
        # Only objects stored before the CRD had a default lack the field.
        return [{"op": "add", "path": "/spec/restarts", "value": 1}]
    return [
        {"op": "test", "path": "/spec/restarts", "value": current},
        {"op": "replace", "path": "/spec/restarts", "value": current + 1},
    ]


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 timestamp from the status, or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def prunable(obj: Json, phases: frozenset[str], older_than: float | None, now: dt.datetime) -> bool:
    """Whether `prune` should delete this PgJob."""
    status = obj.get("status") or {}
    if status.get("phase") not in phases:
        return False
    if older_than is None:
        return True
    finished = parse_time(status.get("finishedAt"))
    # Without finishedAt the age is unknown: keep it rather than guess.
    return finished is not None and (now - finished).total_seconds() >= older_than
