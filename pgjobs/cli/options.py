"""Shared argparse helpers: every option also reads `PGJOBS_<OPTION>` from the environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any


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
