"""pid_alive: what the cluster's pid files and the stale-dir sweep rely on."""

from __future__ import annotations

import os
import subprocess
import time

from pgjobs.devenv import processes


def test_a_running_process_is_alive_and_an_unreaped_dead_child_is_not() -> None:
    assert processes.pid_alive(os.getpid())
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while processes.pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Exited but not reaped yet (a zombie): not alive.
    assert not processes.pid_alive(child.pid)
    child.wait()
    assert not processes.pid_alive(child.pid)
