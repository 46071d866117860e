"""Live progress of the demos' PgJobs: the kubectl plugin's `watch`, run as a user runs it.

A process of its own rather than an import, so the dev environment stays a client of the CLI
like any other (tests/unit/test_layers.py keeps it so) and the demo shows exactly what
`kubectl pgjobs watch` shows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TextIO


def watch(kubeconfig: Path, namespace: str, selector: str, timeout: float, out: TextIO) -> int:
    """Follow the PgJobs matching `selector` until all are finished; the plugin's exit code."""
    argv = [
        sys.executable, "-m", "pgjobs.cli.kubectl", "--kubeconfig", str(kubeconfig),
        "--namespace", namespace, "watch", "--selector", selector, "--timeout", f"{timeout:.0f}s",
    ]  # fmt: skip
    if out is sys.stdout:  # the terminal itself: progress bars, as the user would see them
        sys.stdout.flush()
        return subprocess.run(argv, check=False).returncode
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            out.write(line)
    return child.returncode
