"""Child processes of the local control plane: started with a log file, stopped in order.

Each runs in its own session (a Ctrl-C reaches the parent, which stops the children in order)
and, when started from the main thread, dies with its parent (PR_SET_PDEATHSIG), so a killed
test run leaves no etcd or kube-apiserver behind.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

LOG_TAIL_LINES = 40


class ProcessError(RuntimeError):
    """A process failed to start, to become ready, or a command it ran failed."""


def free_port() -> int:
    # The port could be taken between here and the bind by the child; on
    # loopback in a test run that is rare enough to report instead of retry.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child before exec: if pytest is SIGKILLed, atexit never runs;
    # PR_SET_PDEATHSIG makes the kernel kill the child anyway. SIGKILL, not
    # SIGTERM: kube-apiserver's graceful shutdown can take seconds, and with
    # the parent gone nobody needs its data.
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _preexec() -> Callable[[], None] | None:
    # PDEATHSIG fires when the parent *thread* exits, so only use it when we
    # are started from the main thread, which lives as long as the process.
    if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
        return _die_with_parent
    return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class ChildProcess:
    """One child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_file: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_file = log_file
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            # Own session: a Ctrl-C in the terminal reaches us, and we stop
            # the children in order instead of them dying mid-request.
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_preexec(),  # only calls prctl: safe after fork
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessError(
                f"{self.name} exited with code {self.popen.returncode}; "
                f"last lines of {self.log_file}:\n{log_tail(self.log_file)}"
            )

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None


def wait_until(ready: Callable[[], bool], proc: ChildProcess, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        if ready():
            return
        time.sleep(0.2)
    raise ProcessError(
        f"{what} not ready after {timeout:.0f}s; last lines of {proc.log_file}:\n{log_tail(proc.log_file)}"
    )


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def pid_alive(pid: int) -> bool:
    """Running, and not a zombie: a child that died while its parent has not reaped it yet
    (a cluster component that died while `up` is still its parent) is not alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
