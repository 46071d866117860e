"""The user's path, run as printed: `make demo`, what `make demo KEEP=1` prints, the docs' blocks.

`make demo` runs `python -m pgjobs.devenv.demo`; these tests run that module exactly so (its own
PostgreSQL and control plane, the operator and two workers as processes). The kept demo's
printed set-up (`export KUBECONFIG=… PATH=… PGJOBS_DATABASE_URL=…`) is applied to a shell
whose PATH has no virtualenv, as a new terminal's has not, and then every command it prints
and every docs block marked `run demo` (tests/docs_blocks.py) runs in it, as printed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgjobs.devenv import controlplane
from tests import docs_blocks
from tests.docs_blocks import ROOT
from tests.processes import wait_for

DEMO = [sys.executable, "-m", "pgjobs.devenv.demo"]
#: A fresh terminal's PATH: no virtualenv, no kubectl; the demo's printed exports must add them.
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Commands that follow until interrupted (kubectl get -w, a worker) run this long, then stop.
FOLLOW_SECONDS = 4.0
COMMAND_TIMEOUT = 120.0


@pytest.fixture(scope="module", autouse=True)
def binaries() -> None:
    try:
        controlplane.find_binaries()
    except controlplane.BinariesNotFoundError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the user-path tests: {exc}", pytrace=False)
        pytest.skip(str(exc))


def demo_env() -> dict[str, str]:
    """The environment make gives the demo, without the pgjobs settings of this test run."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PGJOBS_", "PG", "KUBECONFIG"))}


def test_make_demo_completes_the_five_jobs_with_its_verdict() -> None:
    result = subprocess.run(
        DEMO, cwd=ROOT, env=demo_env(), capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout
    assert result.returncode == 0, f"make demo failed:\n{output}\n{result.stderr}"
    assert re.search(r"^==> all demo jobs Completed in \d+s$", output, re.M), output
    assert re.search(r"^5 Completed$", output, re.M), output
    assert_shown_steps_happen(output)


def assert_shown_steps_happen(output: str) -> None:
    """Each `==>` step README.md shows for `make demo` is one the demo really prints."""
    shown = next(b for b in docs_blocks.blocks(ROOT / "README.md") if b.text.startswith("$ make demo"))
    steps = [line for line in shown.text.splitlines() if line.startswith("==> ")]
    assert len(steps) >= 5
    for step in steps:
        pattern = re.escape(step).replace(r"\ ", " ")
        pattern = re.sub(r"\d+", r"\\d+", pattern)
        assert re.search(f"^{pattern}$", output, re.M), f"README shows `{step}`, the demo never prints it"


class KeptDemo:
    """`make demo KEEP=1` running, with the shell set-up it printed."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen(
            [*DEMO, "--keep"],
            cwd=ROOT,
            env=demo_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.printed: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.printed.append(line.rstrip("\n"))

    def wait_for_instructions(self, timeout: float = 300) -> list[str]:
        """The indented lines after 'Everything keeps running', up to 'Logs:'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith("Logs: ") for line in self.printed):
                start = next(i for i, line in enumerate(self.printed) if "Everything keeps running" in line)
                end = next(i for i, line in enumerate(self.printed) if line.startswith("Logs: "))
                return [line.strip() for line in self.printed[start + 1 : end] if line.strip()]
            assert self.popen.poll() is None, "\n".join(self.printed)
            time.sleep(0.5)
        raise AssertionError("the kept demo printed no instructions:\n" + "\n".join(self.printed))

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.wait()


class Terminal:
    """A new terminal in the checkout: a bare PATH, then the demo's `export` lines; runs commands
    as printed."""

    def __init__(self, exports: list[str], cwd: Path) -> None:
        self.setup = "\n".join(exports)
        self.cwd = cwd
        self.env = {"PATH": BARE_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
        self.last_submitted = "demo-high-1"

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        command = re.sub(r"\bNAME\b", self.last_submitted, command)
        script = f"set -e\n{self.setup}\n{command}\n"
        if following(command):
            return self._follow(script)
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if command.startswith("kubectl pgjobs submit") and result.returncode == 0:
            self.last_submitted = result.stdout.split()[-1]
        return result

    def _follow(self, script: str) -> subprocess.CompletedProcess[str]:
        with subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as child:
            try:
                out, err = child.communicate(timeout=FOLLOW_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGTERM)
                out, err = child.communicate()
                return subprocess.CompletedProcess(child.args, 0, out, err)  # still following: fine
            return subprocess.CompletedProcess(child.args, child.returncode, out, err)


#: Commands that serve until stopped: each must still be running, without an error, when its
#: time is up.
SERVING = (["pgjobs", "worker"], ["pgjobs", "console"])


def following(command: str) -> bool:
    words = shlex.split(command)
    return "-w" in words or "--watch" in words or words[:2] in SERVING


@pytest.fixture(scope="module")
def kept_demo() -> Iterator[tuple[KeptDemo, Terminal, list[str]]]:
    demo = KeptDemo()
    try:
        printed = demo.wait_for_instructions()
        exports = [line for line in printed if line.startswith("export ")]
        commands = [line for line in printed if not line.startswith("export ")]
        yield demo, Terminal(exports, ROOT), commands  # the docs' paths are the checkout's
    finally:
        code = demo.stop()
        assert code == 130, "\n".join(demo.printed[-30:])


def run_all(terminal: Terminal, commands: list[str], where: str) -> None:
    for line in commands:
        result = terminal.run(line)
        assert result.returncode == 0, (
            f"{where}: `{line}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        assert "Traceback" not in result.stderr, f"{where}: `{line}`:\n{result.stderr}"


def test_every_command_make_demo_keep_prints_runs_as_printed(
    kept_demo: tuple[KeptDemo, Terminal, list[str]],
) -> None:
    _, terminal, commands = kept_demo
    assert any(c.startswith("kubectl pgjobs ") for c in commands), commands
    assert any(c.startswith("pgjobs ") for c in commands), commands
    run_all(terminal, commands, "make demo KEEP=1")


@pytest.mark.parametrize(
    "block",
    [b for b in docs_blocks.all_blocks() if b.marker == "run demo"],
    ids=lambda b: b.where,
)
def test_docs_block_runs_as_printed(
    kept_demo: tuple[KeptDemo, Terminal, list[str]], block: docs_blocks.Block
) -> None:
    _, terminal, _ = kept_demo
    commands = block.commands()
    assert commands, f"{block.where} is marked to run but has no command"
    run_all(terminal, commands, block.where)


def test_plugin_conventions_against_the_api_server(kept_demo: tuple[KeptDemo, Terminal, list[str]]) -> None:
    """The forms issue 19 names, in a terminal as the user has it."""
    _, terminal, _ = kept_demo
    created = terminal.run("kubectl pgjobs submit sleep -n default -o name --label docs=conventions")
    assert created.returncode == 0 and created.stdout.startswith("pgjob.pgjobs.dev/sleep-"), created
    name = created.stdout.strip().split("/", 1)[1]
    manifest = terminal.run("kubectl pgjobs submit sleep --dry-run=client -o yaml")
    assert "kind: PgJob" in manifest.stdout and manifest.returncode == 0, manifest
    # A client-side dry run creates nothing; the printed manifest is what kubectl would create.
    applied = terminal.run(
        "kubectl pgjobs submit sleep --name from-dry-run --dry-run=client -o yaml | kubectl apply -f -"
    )
    assert "pgjob.pgjobs.dev/from-dry-run created" in applied.stdout, applied
    for command in (
        f"kubectl pgjobs stop {name} -n default",
        "kubectl pgjobs start -l docs=conventions -n default",
        "kubectl pgjobs watch -A -l docs=conventions --timeout 60s",
        "kubectl pgjobs version",
    ):
        result = terminal.run(command)
        assert result.returncode == 0, f"`{command}`:\n{result.stdout}\n{result.stderr}"
    shown = terminal.run("kubectl pgjobs watch -A -l docs=conventions --timeout 60s").stdout
    assert f"default/{name}" in shown


def test_the_command_an_error_message_names_runs(kept_demo: tuple[KeptDemo, Terminal, list[str]]) -> None:
    """`pgjobs stop ID` on a PgJob's row names the kubectl command to use instead; that command works."""
    _, terminal, _ = kept_demo
    created = terminal.run("kubectl pgjobs submit sleep --args '{\"seconds\": 30}' -n default")
    assert created.returncode == 0, created
    name = created.stdout.strip()

    def row_id() -> int | None:
        listing = terminal.run("pgjobs jobs --json")
        assert listing.returncode == 0, listing
        rows = [row for row in json.loads(listing.stdout) if row["pgjob"] == f"default/{name}"]
        return int(rows[0]["id"]) if rows else None

    job_id = wait_for(row_id, 30, interval=0.5, what=f"a row for PgJob {name}")
    refused = terminal.run(f"pgjobs stop {job_id}")
    assert refused.returncode != 0
    named = re.search(r"`(kubectl pgjobs stop [^`]+)`", refused.stderr + refused.stdout)
    assert named, refused.stderr
    assert named.group(1) == f"kubectl pgjobs stop {name} -n default"
    result = terminal.run(named.group(1))
    assert result.returncode == 0, f"`{named.group(1)}`:\n{result.stdout}\n{result.stderr}"
