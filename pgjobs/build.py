"""What this pgjobs is: its version, the one place every process and command reads it from.

The version is the installed distribution's (pyproject.toml's `version`); `pgjobs --version`,
`kubectl pgjobs version` and the `pgjobs_build_info` series of every process report it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform


def _installed_version() -> str:
    try:
        return importlib.metadata.version("pgjobs")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0+unknown"


VERSION = _installed_version()


@functools.cache
def publish_build_info(component: str) -> None:
    """Set `pgjobs_build_info{version,component,python} 1` for this process (once)."""
    from prometheus_client import Gauge

    info = Gauge(
        "pgjobs_build_info",
        "The pgjobs running in this process: version, component (worker, operator), Python",
        ["version", "component", "python"],
    )
    info.labels(VERSION, component, platform.python_version()).set(1)
