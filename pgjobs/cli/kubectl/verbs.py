"""The plugin's verbs: each one or two plain API calls on PgJob objects."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

import yaml

from pgjobs import build, crd
from pgjobs.cli import times
from pgjobs.cli.kubectl.api import JobsApi, api_errors, connect, load_client, operator_versions
from pgjobs.cli.kubectl.errors import EXIT_FAILED, EXIT_OK, PluginError
from pgjobs.cli.kubectl.objects import (
    Json,
    build_manifest,
    parse_args_json,
    prunable,
)
from pgjobs.cli.kubectl.patching import restart_one
from pgjobs.cli.kubectl.patching import set_stopped as patch_stopped
from pgjobs.cli.kubectl.watching import Selection, run_watch
from pgjobs.operator import jobtemplates


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
        labels=dict(opts.labels),
        run_at=scheduled_time(opts),
        unique_key=opts.unique_key,
    )
    if opts.dry_run == "client":
        body["metadata"]["namespace"] = opts.namespace or namespace_of(opts)
        print(render(body, opts.output or "yaml"), file=out, end="", flush=True)
        return EXIT_OK
    jobs = connect(opts)
    with api_errors(f"cannot create PgJob for task {opts.task!r}"):
        created = jobs.create(body, dry_run=opts.dry_run == "server")
    if opts.dry_run == "server" and not opts.output:
        print(render(created, "yaml"), file=out, end="", flush=True)
        return EXIT_OK
    name = str(created["metadata"].get("name") or "")
    print(render(created, opts.output) if opts.output else f"{name}\n", file=out, end="", flush=True)
    if not opts.wait:
        return EXIT_OK
    return run_watch(jobs, Selection(names=frozenset({name})), opts.wait_timeout, out)


def cmd_trigger(opts: argparse.Namespace, out: TextIO) -> int:
    """One PgJob now from a PgCronJob's template, owned by it, as `kubectl create job --from=cronjob/NAME`."""
    jobs = connect(opts)
    with api_errors(f"cannot read PgCronJob {opts.cronjob!r} in namespace {jobs.namespace!r}"):
        cronjob = jobs.get_cronjob(opts.cronjob)
    body = jobtemplates.pgjob_from(cronjob, generate_name=jobtemplates.manual_prefix(opts.cronjob))
    with api_errors(f"cannot create a PgJob from PgCronJob {opts.cronjob!r}"):
        created = jobs.create(body)
    name = str(created["metadata"].get("name") or "")
    print(render(created, opts.output) if opts.output else f"{name}\n", file=out, end="", flush=True)
    if not opts.wait:
        return EXIT_OK
    return run_watch(jobs, Selection(names=frozenset({name})), opts.wait_timeout, out)


def for_each(names: Iterable[str], act: Callable[[str], str], out: TextIO) -> int:
    """`act(name)` for every name, printing the line it returns; an API error on one is printed
    and the others go on (exit 1 if any failed)."""
    failures = 0
    for name in names:
        try:
            line = act(name)
        except PluginError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(line, file=out)
    return EXIT_FAILED if failures else EXIT_OK


def set_queues_paused(opts: argparse.Namespace, paused: bool, out: TextIO) -> int:
    jobs = connect(opts)
    verb = "pause" if paused else "resume"

    def act(queue: str) -> str:
        with api_errors(f"cannot {verb} queue {queue!r}"):
            changed = jobs.set_queue_paused(queue, paused)
        done = f"{verb}d" if changed else "not paused (it has no PgQueue)"
        return f"{crd.QUEUE_SINGULAR}.{crd.GROUP}/{queue} {done}"

    return for_each(opts.queues, act, out)


def cmd_pause(opts: argparse.Namespace, out: TextIO) -> int:
    return set_queues_paused(opts, True, out)


def cmd_resume(opts: argparse.Namespace, out: TextIO) -> int:
    return set_queues_paused(opts, False, out)


def scheduled_time(opts: argparse.Namespace) -> str | None:
    """spec.runAt from --at (as written) or --in (from now, in UTC)."""
    if opts.at is not None:
        return str(opts.at)
    if opts.after is not None:
        return times.rfc3339(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=opts.after))
    return None


def namespace_of(opts: argparse.Namespace) -> str:
    """The namespace a client-side dry run shows: the kubeconfig's, without calling the API."""
    try:
        return load_client(opts)[1]
    except PluginError:
        return "default"  # no kubeconfig needed to print a manifest


def render(obj: Json, output: str) -> str:
    """A PgJob as -o name, json or yaml prints it (as kubectl does)."""
    if output == "name":
        metadata = obj["metadata"]
        return f"{crd.SINGULAR}.{crd.GROUP}/{metadata.get('name') or metadata.get('generateName', '')}\n"
    if output == "json":
        return json.dumps(obj, indent=2) + "\n"
    return str(yaml.safe_dump(obj, sort_keys=False))


def selected_names(jobs: JobsApi, opts: argparse.Namespace) -> list[str]:
    """The NAMEs given, or the PgJobs matching -l SELECTOR (the parser allows exactly one)."""
    if opts.names:
        return list(opts.names)
    with api_errors(f"cannot list PgJobs in namespace {jobs.namespace!r}"):
        items = jobs.list_all(opts.selector).get("items") or []
    names = [str(obj["metadata"]["name"]) for obj in items]
    if not names:
        raise PluginError(f"no PgJobs match {opts.selector!r} in namespace {jobs.namespace}")
    return names


def set_stopped(opts: argparse.Namespace, stopped: bool, out: TextIO) -> int:
    jobs = connect(opts)
    verb = "stop" if stopped else "start"

    def act(name: str) -> str:
        patch_stopped(jobs, name, stopped)
        return f"{crd.SINGULAR}.{crd.GROUP}/{name} {verb} requested"

    return for_each(selected_names(jobs, opts), act, out)


def cmd_stop(opts: argparse.Namespace, out: TextIO) -> int:
    return set_stopped(opts, True, out)


def cmd_start(opts: argparse.Namespace, out: TextIO) -> int:
    return set_stopped(opts, False, out)


def cmd_restart(opts: argparse.Namespace, out: TextIO) -> int:
    jobs = connect(opts)
    failures = 0
    for name in selected_names(jobs, opts):
        try:
            restarts = restart_one(jobs, name)
        except PluginError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"{crd.SINGULAR}.{crd.GROUP}/{name} restart requested (spec.restarts={restarts})", file=out)
    return EXIT_FAILED if failures else EXIT_OK


def prune_one(jobs: JobsApi, obj: Json, dry_run: bool) -> str:
    """Delete one listed PgJob unless it changed since it was listed."""
    from kubernetes.client.exceptions import ApiException

    meta = obj["metadata"]
    name = str(meta["name"])
    phase = (obj.get("status") or {}).get("phase")
    if dry_run:
        return f"{crd.SINGULAR}.{crd.GROUP}/{name} would be deleted ({phase}) (dry run)"
    try:
        jobs.delete_exact(name, str(meta["uid"]), str(meta["resourceVersion"]))
    except ApiException as exc:
        if exc.status == 404:
            return f"{crd.SINGULAR}.{crd.GROUP}/{name} already gone"
        if exc.status == 409:
            # Restarted or otherwise changed after we listed it: not ours to delete.
            return f"{crd.SINGULAR}.{crd.GROUP}/{name} changed since listed, kept"
        raise
    return f"{crd.SINGULAR}.{crd.GROUP}/{name} deleted ({phase})"


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
        all_namespaces=opts.all_namespaces,
    )
    return run_watch(jobs, selection, opts.timeout, out)


def cmd_version(opts: argparse.Namespace, out: TextIO) -> int:
    """The plugin's version, then each operator's that the user may see (best effort)."""
    print(f"kubectl-pgjobs {build.VERSION}", file=out)
    try:
        with api_errors("cannot list the pgjobs operators"):
            operators = operator_versions(opts)
    except PluginError as exc:
        print(f"operator: unknown ({exc})", file=out)
        return EXIT_OK
    if not operators:
        print("operator: none found (no Deployment labelled app.kubernetes.io/component=operator)", file=out)
    for where, version in operators:
        print(f"operator {where}: {version}", file=out)
    return EXIT_OK
