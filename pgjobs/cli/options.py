"""Shared argparse helpers: every option also reads `PGJOBS_<OPTION>` from the environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from pgjobs import states

LOG_LEVELS = ["debug", "info", "warning", "error"]
SESSION_URL_HELP = (
    "connection URL for LISTEN, which needs a server session of its own: PostgreSQL itself or a"
    " session-mode pool when --database-url is PgBouncer in transaction mode (default: --database-url)"
)
NO_PREPARED_STATEMENTS_HELP = "name no prepared statements (PgBouncer before 1.21 in transaction mode)"


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def missing_extra_text(part: str, extra: str, module: str | None) -> str:
    """The one line for a part of pgjobs whose package extra is not installed."""
    return (
        f"{part} needs {module}, which comes with the {extra} extra: "
        f"pip install 'pgjobs[{extra}]' (the pgjobs image has it)"
    )


def env_name(option: str) -> str:
    return "PGJOBS_" + option.lstrip("-").replace("-", "_").upper()


def add(
    parser: argparse.ArgumentParser, option: str, *, default: Any = None, help: str, **kwargs: Any
) -> None:
    """Add `--option`; its default comes from PGJOBS_OPTION when set (argparse converts strings)."""
    variable = env_name(option)
    value = os.environ.get(variable, default)
    parser.add_argument(option, default=value, help=f"{help} [env {variable}]", **kwargs)


def add_flag(parser: argparse.ArgumentParser, option: str, *, help: str) -> None:
    variable = env_name(option)
    value = os.environ.get(variable, "").strip().lower() in {"1", "true", "yes", "on"}
    parser.add_argument(option, action="store_true", default=value, help=f"{help} [env {variable}]")


def add_list(
    parser: argparse.ArgumentParser, option: str, *, default: Sequence[str], help: str, metavar: str
) -> None:
    """A repeatable option; the environment variable takes a comma-separated list."""
    variable = env_name(option)
    from_env = [item.strip() for item in os.environ.get(variable, "").split(",") if item.strip()]
    parser.add_argument(
        option,
        action="append",
        default=None,
        metavar=metavar,
        help=f"{help} (repeatable; default: {', '.join(default) or 'none'}) "
        f"[env {variable}, comma-separated]",
    )
    parser.set_defaults(**{_dest(option) + "_default": from_env or list(default)})


def resolved_list(args: argparse.Namespace, option: str) -> list[str]:
    given: list[str] | None = getattr(args, _dest(option))
    if given:
        return [item.strip() for value in given for item in value.split(",") if item.strip()]
    return list(getattr(args, _dest(option) + "_default"))


def _dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def command(
    commands: Any, name: str, help: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """A subcommand of `pgjobs` that calls `handler` with the parsed arguments."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    # The global options are accepted after the command too; SUPPRESS keeps the global value
    # unless they are given here.
    parser.add_argument(
        "--database-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="PostgreSQL connection URL [env PGJOBS_DATABASE_URL]",
    )
    parser.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=LOG_LEVELS,
        help="log level [env PGJOBS_LOG_LEVEL]",
    )
    parser.add_argument(
        "--session-database-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"{SESSION_URL_HELP} [env PGJOBS_SESSION_DATABASE_URL]",
    )
    parser.add_argument(
        "--no-prepared-statements",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"{NO_PREPARED_STATEMENTS_HELP} [env PGJOBS_NO_PREPARED_STATEMENTS]",
    )
    return parser


#: What --stall-timeout means for each command that takes it.
STALL_TIMEOUT_HELP = {
    "rescue": "the stall timeout of a Running job whose worker has no row any more (each worker's "
    "own timeout, recorded in its row, decides for the others)",
    "worker": "seconds without a heartbeat after which this worker is presumed dead and its jobs "
    "rescued (it lets its jobs go first); recorded in its row for every rescuer",
    "operator": "a new leader's warm-up before its first rescue sweep (workers reconnect and beat "
    "first), and the stall timeout of a Running job whose worker has no row any more (each "
    "worker's own timeout, recorded in its row, decides for the others)",
}


def add_stall_timeout(parser: argparse.ArgumentParser, command: str) -> None:
    add(parser, "--stall-timeout", default=states.STALL_TIMEOUT, type=float, help=STALL_TIMEOUT_HELP[command])
