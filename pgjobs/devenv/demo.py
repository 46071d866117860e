"""`make demo`: the five jobs of the old system, on a throwaway PostgreSQL and control plane.

    python -m pgjobs.devenv.demo [--keep]

Starts PostgreSQL and a local kube-apiserver, installs the CRDs, migrates the database,
starts the operator and two workers as processes (logs in files, shown when something fails),
applies deploy/examples/demo-jobs.yaml (3 High, 2 Regular) and shows their progress live.
Exits 0 when all five are Completed. With --keep (or KEEP=1) everything stays up for
exploring with kubectl until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import yaml

from pgjobs.devenv import controlplane, logsapi, postgres, progress
from pgjobs.devenv.processes import free_port, log_tail

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
DEMO_JOBS = ROOT / "deploy" / "examples" / "demo-jobs.yaml"
SELECTOR = "app.kubernetes.io/part-of=pgjobs-demo"
WATCH_TIMEOUT = 180.0


class DemoError(RuntimeError):
    """A step failed; the message says which and shows the relevant log."""


class Process:
    """A pgjobs process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            )

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise DemoError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def say(text: str, out: TextIO = sys.stdout) -> None:
    print(f"==> {text}", file=out, flush=True)


def pgjobs_command(*args: str) -> list[str]:
    beside = Path(sys.executable).with_name("pgjobs")  # the venv's console script
    return [str(beside) if beside.exists() else "pgjobs", *args]


def install_crd(cluster: controlplane.ControlPlane) -> None:
    cluster.run_kubectl("apply", "--server-side", "-f", str(CRDS))
    for crd in ("pgjobs.pgjobs.dev", "pgcronjobs.pgjobs.dev"):
        cluster.run_kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    deadline = time.monotonic() + 60
    while True:  # kubectl finds "pgjobs" through discovery, which lags a little behind
        try:
            cluster.run_kubectl("get", "pgjobs")
            cluster.run_kubectl("get", "pgcronjobs")
            return
        except controlplane.ControlPlaneError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def database_env(server: postgres.PostgresServer) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PGJOBS_", "PG"))}
    return env | {
        "PGJOBS_DATABASE_URL": server.url_without_password("pgjobs"),
        "DB_PASSWORD": server.password,
    }


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):  # workers first, then the operator
            process.stop()


def start_operator(
    cluster: controlplane.ControlPlane, env: dict[str, str], log_dir: Path, started: list[Process]
) -> None:
    say("pgjobs migrate")
    subprocess.run(pgjobs_command("migrate"), env=env, check=True)
    say(f"starting the operator (logs in {log_dir})")
    port, cert_dir = free_port(), log_dir / "serving"
    ca = logsapi.serving_cert(cert_dir, "default")
    argv = pgjobs_command(
        "operator", "--kubeconfig", str(cluster.kubeconfig), "--liveness-port", "0", "--metrics-port", "0"
    )
    started.append(Process("operator", [*argv, *logsapi.operator_args(port, cert_dir)], env, log_dir))
    # `kubectl pgjobs logs` through the API server, as in a cluster (it waits for no one).
    cluster.run_kubectl("apply", "-f", "-", input=yaml.safe_dump_all(logsapi.manifests("default", port, ca)))


def start_workers(env: dict[str, str], log_dir: Path, started: list[Process]) -> None:
    say("starting two workers")
    for number in (1, 2):
        argv = pgjobs_command(
            "worker", "--name", f"worker-{number}", "--heartbeat-interval", "1", "--stall-timeout", "10"
        )
        started.append(Process(f"worker-{number}", argv, env, log_dir))


def apply_jobs(cluster: controlplane.ControlPlane, started: list[Process], out: TextIO) -> None:
    say(f"kubectl apply -f {DEMO_JOBS.relative_to(ROOT)}")
    print(cluster.run_kubectl("apply", "-f", str(DEMO_JOBS)).stdout, end="", file=out)
    # All five are queued before a worker looks, so High goes before Regular as in the old system.
    wait_all_pending(cluster, started[0])


def wait_all_pending(cluster: controlplane.ControlPlane, operator: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        operator.check()
        phases = cluster.run_kubectl(
            "get", "pgjobs", "-l", SELECTOR, "-o", "jsonpath={.items[*].status.phase}"
        ).stdout.split()
        if phases.count("Pending") == 5:
            return
        if time.monotonic() > deadline:
            raise DemoError(f"the operator did not queue the demo jobs in {timeout:.0f}s:\n{operator.tail()}")
        time.sleep(0.2)


def watch_jobs(cluster: controlplane.ControlPlane, started: list[Process], out: TextIO) -> int:
    """Live progress of the demo jobs (the kubectl plugin's watch) until all are finished."""
    for process in started:
        process.check()
    say(f"progress (kubectl pgjobs watch --selector {SELECTOR})")
    code = progress.watch(cluster.kubeconfig, "default", SELECTOR, WATCH_TIMEOUT, out)
    say("kubectl get pgjobs")
    print(cluster.run_kubectl("get", "pgjobs", "-o", "wide").stdout, end="", file=out)
    return code


def keep_running(
    cluster: controlplane.ControlPlane, env: dict[str, str], started: list[Process], out: TextIO
) -> None:
    print(explore_text(cluster, env, started[0].log.parent), file=out, flush=True)
    while True:
        for process in started:
            process.check()
        time.sleep(1)


def explore_text(cluster: controlplane.ControlPlane, env: dict[str, str], log_dir: Path) -> str:
    """What --keep prints: a shell set-up and commands that work as printed in another terminal.

    PATH gets this virtualenv's bin (kubectl-pgjobs and pgjobs live there) as well as kubectl's
    directory, so a terminal without the virtualenv activated finds the plugin too.
    """
    path = f"{Path(sys.executable).parent}:{cluster.kubectl.parent}"
    database = " ".join(f"{key}={shlex.quote(env[key])}" for key in ("PGJOBS_DATABASE_URL", "DB_PASSWORD"))
    return f"""
Everything keeps running until Ctrl-C. In another terminal:

  export KUBECONFIG={cluster.kubeconfig}
  export PATH={path}:$PATH
  export {database}
  kubectl get pgjobs -o wide
  kubectl pgjobs submit sleep --args '{{"seconds": 20, "steps": 10}}' --priority High
  kubectl get pgjobs -w
  kubectl pgjobs stop NAME; kubectl pgjobs start NAME; kubectl pgjobs restart NAME
  kubectl describe pgjob demo-high-1
  kubectl pgjobs logs demo-high-1
  kubectl pgjobs prune --phase Completed
  pgjobs jobs
  pgjobs console    # the web console on http://127.0.0.1:8090/

Logs: {log_dir}
"""


def run(keep: bool, out: TextIO = sys.stdout) -> int:
    started_at = time.monotonic()
    say("starting PostgreSQL and the local control plane (etcd + kube-apiserver)")
    log_dir = Path(tempfile.mkdtemp(prefix="pgjobs-demo-"))
    with postgres.PostgresServer() as server, controlplane.ControlPlane(keep_dir=keep) as cluster:
        say(f"PostgreSQL on port {server.port}, kube-apiserver at {cluster.server}")
        install_crd(cluster)
        with processes() as started:
            try:
                env = database_env(server)
                start_operator(cluster, env, log_dir, started)
                apply_jobs(cluster, started, out)
                start_workers(env, log_dir, started)
                code = watch_jobs(cluster, started, out)
                for process in started:
                    process.check()
            except (DemoError, controlplane.ControlPlaneError, subprocess.CalledProcessError) as error:
                print(f"demo failed: {error}", file=sys.stderr)
                for process in started:
                    print(f"---- {process.log} ----\n{process.tail()}", file=sys.stderr)
                return 1
            say(
                f"all demo jobs Completed in {time.monotonic() - started_at:.0f}s"
                if code == 0
                else "demo failed"
            )
            if code != 0:
                for process in started:
                    print(f"---- {process.log} ----\n{process.tail()}", file=sys.stderr)
            if keep:
                keep_running(cluster, env, started, out)
            return code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgjobs.devenv.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep",
        action="store_true",
        default=os.environ.get("KEEP", "") not in ("", "0"),
        help="keep everything running afterwards, for kubectl (also KEEP=1)",
    )
    args = parser.parse_args(argv)
    # SIGTERM (e.g. from make or CI) tears down like Ctrl-C: the with-blocks stop everything.
    # SIGINT too, explicitly: a process started in the background by a shell inherits SIGINT
    # ignored, and Python then leaves it ignored, so Ctrl-C (or `kill -INT`) would do nothing.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    try:
        return run(args.keep)
    except KeyboardInterrupt:
        print("\ninterrupted: stopped the workers, the operator, the control plane and PostgreSQL")
        return 130
    except (controlplane.BinariesNotFoundError, postgres.PostgresNotFound) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
