"""`pgjobs console`: the web console's options; the console itself is pgjobs.console."""

from __future__ import annotations

import argparse
from typing import Any

from pgjobs.cli import database, options
from pgjobs.console.settings import ConsoleSettings


def add(commands: Any) -> None:
    parser = options.command(
        commands,
        "console",
        "serve the web console: queues, jobs, workers, live, with stop/start/restart/delete",
        _console,
    )
    defaults = ConsoleSettings
    options.add(
        parser,
        "--address",
        default=defaults.address,
        help="address to listen on (the console has no login: keep it local or behind a proxy that has one)",
    )
    options.add(parser, "--port", default=defaults.port, type=int, help="port to listen on")
    options.add(
        parser,
        "--kubeconfig",
        default=defaults.kubeconfig,
        help="kubeconfig for actions on PgJobs (default: $KUBECONFIG, ~/.kube/config, else in-cluster)",
    )
    options.add(parser, "--context", default=defaults.context, help="kubeconfig context")
    options.add(
        parser,
        "--refresh-seconds",
        default=defaults.refresh_seconds,
        type=float,
        help="how often open pages refresh their live parts",
    )


def _console(args: argparse.Namespace) -> int:
    try:
        from pgjobs.console import server
    except ModuleNotFoundError as missing:
        raise options.UserError(options.missing_extra_text("the console", "console", missing.name)) from None
    settings = ConsoleSettings(
        address=args.address,
        port=int(args.port),
        kubeconfig=args.kubeconfig,
        context=args.context,
        refresh_seconds=float(args.refresh_seconds),
    )
    return server.serve(settings, database.settings(args))
