"""The plugin's verbs: each one or two plain API calls on PgJob objects."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TextIO

from pgjobs import crd
from pgjobs.cli.kubectl.api import JobsApi, api_errors, connect
from pgjobs.cli.kubectl.errors import EXIT_FAILED, EXIT_OK, PluginError
from pgjobs.cli.kubectl.objects import (
    Json,
    build_manifest,
    parse_args_json,
    prunable,
    restart_patch,
    stopped_patch,
)
from pgjobs.cli.kubectl.watching import Selection, run_watch

# Restart retries: each retry means somebody else changed spec.restarts
# between our read and our patch, which is rare; a bound keeps a bug from
# spinning forever.
RESTART_ATTEMPTS = 5


def cmd_submit(opts: argparse.Namespace, out: TextIO) -> int:
    body = build_manifest(
        opts.task,
        args=parse_args_json(opts.args),
        priority=opts.priority,
        queue=opts.queue,
        max_attempts=opts.max_attempts,
        timeout_seconds=opts.timeout,
        ttl_seconds=opts.ttl,
        name=opts.name,
        generate_name=opts.generate_name,
    )
    jobs = connect(opts)
    with api_errors(f"cannot create PgJob for task {opts.task!r}"):
        created = jobs.create(body)
    name = str(created["metadata"]["name"])
    print(name, file=out, flush=True)
    if not opts.wait:
        return EXIT_OK
    return run_watch(jobs, Selection(names=frozenset({name})), opts.wait_timeout, out)


def set_stopped(opts: argparse.Namespace, stopped: bool, out: TextIO) -> int:
    jobs = connect(opts)
    verb = "stop" if stopped else "start"
    failures = 0
    for name in opts.names:
        try:
            with api_errors(f"cannot {verb} PgJob {name!r}"):
                jobs.merge_patch(name, stopped_patch(stopped))
        except PluginError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"pgjob.{crd.GROUP}/{name} {verb} requested", file=out)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_stop(opts: argparse.Namespace, out: TextIO) -> int:
    return set_stopped(opts, True, out)


def cmd_start(opts: argparse.Namespace, out: TextIO) -> int:
    return set_stopped(opts, False, out)


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


def cmd_restart(opts: argparse.Namespace, out: TextIO) -> int:
    jobs = connect(opts)
    failures = 0
    for name in opts.names:
        try:
            restarts = restart_one(jobs, name)
        except PluginError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"pgjob.{crd.GROUP}/{name} restart requested (spec.restarts={restarts})", file=out)
    return EXIT_FAILED if failures else EXIT_OK


def prune_one(jobs: JobsApi, obj: Json, dry_run: bool) -> str:
    """Delete one listed PgJob unless it changed since it was listed."""
    from kubernetes.client.exceptions import ApiException

    meta = obj["metadata"]
    name = str(meta["name"])
    phase = (obj.get("status") or {}).get("phase")
    if dry_run:
        return f"pgjob.{crd.GROUP}/{name} would be deleted ({phase}) (dry run)"
    try:
        jobs.delete_exact(name, str(meta["uid"]), str(meta["resourceVersion"]))
    except ApiException as exc:
        if exc.status == 404:
            return f"pgjob.{crd.GROUP}/{name} already gone"
        if exc.status == 409:
            # Restarted or otherwise changed after we listed it: not ours to delete.
            return f"pgjob.{crd.GROUP}/{name} changed since listed, kept"
        raise
    return f"pgjob.{crd.GROUP}/{name} deleted ({phase})"


def cmd_prune(opts: argparse.Namespace, out: TextIO) -> int:
    jobs = connect(opts)
    with api_errors(f"cannot list PgJobs in namespace {jobs.namespace!r}"):
        items = jobs.list_all(opts.selector).get("items") or []
    now = dt.datetime.now(dt.UTC)
    chosen = [o for o in items if prunable(o, opts.phase, opts.older_than, now)]
    for obj in chosen:
        with api_errors(f"cannot delete PgJob {obj['metadata']['name']!r}"):
            print(prune_one(jobs, obj, opts.dry_run), file=out)
    if not chosen:
        print(f"no PgJobs to prune in namespace {jobs.namespace}", file=out)
    return EXIT_OK


def cmd_watch(opts: argparse.Namespace, out: TextIO) -> int:
    jobs = connect(opts)
    selection = Selection(
        names=frozenset(opts.names),
        selector=opts.selector,
        include_finished=opts.all or bool(opts.selector),
    )
    return run_watch(jobs, selection, opts.timeout, out)
