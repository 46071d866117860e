"""`make cluster-demo`: the five demo jobs on real pods, installed by the real chart.

    python -m pgjobs.devenv.clusterdemo --helm PATH [--keep]

Runs against the single-node cluster of `make cluster` (pgjobs.devenv.cluster), whose
containerd already holds the images of `make image`. `helm install`s helm/pgjobs with
deploy/cluster/values.yaml (the operator, two worker pods and the dev PostgreSQL pod), applies
deploy/examples/demo-jobs.yaml and shows their progress live; the WORKER column names the
worker pods. Exits 0 when all five are Completed. Without --keep (KEEP=1) the cluster is torn
down afterwards; with it, everything stays up and the kubeconfig is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from pgjobs.devenv import cluster, controlplane, progress
from pgjobs.devenv.nodeconfig import Layout

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pgjobs"
VALUES = ROOT / "deploy" / "cluster" / "values.yaml"
#: The demo shows the web console too (off by default in the chart: it has no login of its own).
CONSOLE = "--set=console.enabled=true"
DEMO_JOBS = ROOT / "deploy" / "examples" / "demo-jobs.yaml"
NAMESPACE = "pgjobs"
RELEASE = "pgjobs"
SELECTOR = "app.kubernetes.io/part-of=pgjobs-demo"
INSTALL_TIMEOUT = "5m"
WATCH_TIMEOUT = 180.0


class DemoError(RuntimeError):
    """A step failed; the message says which."""


def say(text: str, out: TextIO) -> None:
    print(f"==> {text}", file=out, flush=True)


def _run(argv: list[str], kubeconfig: Path, out: TextIO) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DemoError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def helm_install(helm: Path, kubeconfig: Path, out: TextIO) -> None:
    say(f"helm install {RELEASE} helm/pgjobs -n {NAMESPACE} -f {VALUES.relative_to(ROOT)} {CONSOLE}", out)
    started = time.monotonic()
    _run(
        [
            str(helm),
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            f"--namespace={NAMESPACE}",
            "--create-namespace",
            f"--values={VALUES}",
            CONSOLE,
            "--wait",
            f"--timeout={INSTALL_TIMEOUT}",
        ],
        kubeconfig,
        out,
    )
    say(f"installed and every pod Ready in {time.monotonic() - started:.0f}s", out)


def show(kubectl: Path, kubeconfig: Path, out: TextIO, *args: str) -> None:
    say(f"kubectl {' '.join(args)}", out)
    print(_run([str(kubectl), *args], kubeconfig, out), end="", file=out, flush=True)


def run(helm: Path, keep: bool, out: TextIO = sys.stdout) -> int:
    started = time.monotonic()
    layout = Layout(cluster.DEFAULT_DIR)
    if not cluster.running(layout):
        print("cluster-demo: no cluster is running; `make cluster-demo` starts one", file=sys.stderr)
        return 1
    kubeconfig = layout.admin_kubeconfig
    kubectl = controlplane.bin_dir() / "kubectl"
    helm_install(helm, kubeconfig, out)
    show(kubectl, kubeconfig, out, "get", "pods", "-n", NAMESPACE, "-o", "wide")
    show(kubectl, kubeconfig, out, "apply", "-n", NAMESPACE, "-f", str(DEMO_JOBS))
    say(f"progress (kubectl pgjobs watch -n {NAMESPACE} --selector {SELECTOR})", out)
    code = progress.watch(kubeconfig, NAMESPACE, SELECTOR, WATCH_TIMEOUT, out)
    show(kubectl, kubeconfig, out, "get", "pgjobs", "-n", NAMESPACE, "-o", "wide")
    verdict = "all demo jobs Completed" if code == 0 else "demo failed"
    say(f"{verdict}, {time.monotonic() - started:.0f}s after `helm install` began", out)
    if keep:
        print(
            f"\nThe cluster keeps running; `make cluster-down` stops it.\n\n"
            f"  export KUBECONFIG={kubeconfig}\n"
            f"  export PATH={Path(sys.executable).parent}:{kubectl.parent}:$PATH\n"
            f"  kubectl get pods,pgjobs -n {NAMESPACE} -o wide\n"
            f"  kubectl scale deployment/{RELEASE}-worker -n {NAMESPACE} --replicas=4\n",
            file=out,
        )
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgjobs.devenv.clusterdemo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--helm", type=Path, required=True, help="the helm binary")
    parser.add_argument(
        "--keep",
        action="store_true",
        default=os.environ.get("KEEP", "") not in ("", "0"),
        help="keep the cluster running afterwards (also KEEP=1)",
    )
    args = parser.parse_args(argv)
    layout = Layout(cluster.DEFAULT_DIR)
    code = 1
    try:
        code = run(args.helm, args.keep)
    except (DemoError, controlplane.ControlPlaneError) as error:
        print(f"cluster-demo failed: {error}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"component logs: {layout.logs}")
        else:
            saved = cluster.down(layout, save_logs=code != 0)
            print("cluster stopped and removed (KEEP=1 keeps it)")
            if saved:
                print(f"component logs kept in {saved}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
