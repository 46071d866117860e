"""`make cluster-demo` on the node, and the commands the chart's NOTES.txt prints, run as printed.

`make cluster-demo` runs `python -m pgjobs.devenv.clusterdemo --helm HELM` on the cluster of
`make cluster`; this test runs that module so, with --keep (KEEP=1) because the session's
cluster serves the other tests too, then follows the chart's NOTES.txt: the first job, its
stop, start and restart through the plugin, its log, and its queue paused and resumed, each
command as NOTES.txt prints it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pgjobs.devenv import controlplane, nodeconfig
from tests.cluster.helpers import ROOT, Release, helm_binary, wait_for

NAMESPACE = RELEASE = "pgjobs"  # what pgjobs.devenv.clusterdemo installs


@pytest.fixture
def demo_release(node: nodeconfig.Layout) -> Iterator[Release]:
    release = Release(node, name=RELEASE, namespace=NAMESPACE)
    try:
        yield release
    finally:
        release.remove()


def terminal_env(node: nodeconfig.Layout) -> dict[str, str]:
    """What the kept cluster demo tells a user to export: its kubeconfig, kubectl and the plugin."""
    path = f"{os.path.dirname(sys.executable)}:{controlplane.bin_dir()}:/usr/bin:/bin"
    return {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "KUBECONFIG": str(node.admin_kubeconfig)}


def test_cluster_demo_and_the_commands_of_notes_txt(node: nodeconfig.Layout, demo_release: Release) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "pgjobs.devenv.clusterdemo", "--helm", helm_binary(), "--keep"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, f"make cluster-demo failed:\n{demo.stdout}\n{demo.stderr}"
    assert re.search(r"^==> all demo jobs Completed, \d+s after `helm install` began$", demo.stdout, re.M)
    assert re.search(r"^5 Completed$", demo.stdout, re.M), demo.stdout

    # The web console runs as a pod of its own, Ready (its probe asks it for a page's health).
    [console] = demo_release.pods("console")
    ready = {c["type"]: c["status"] for c in console["status"]["conditions"]}
    assert ready["Ready"] == "True", console["status"]

    notes = demo_release.run(demo_release.helm, "get", "notes", RELEASE, f"--namespace={NAMESPACE}")
    env = terminal_env(node)

    def sh(script: str) -> str:
        result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"NOTES.txt's `{script}` exited {result.returncode}:\n{result.stderr}"
        return result.stdout

    sh(indented_after(notes, "Wait until they are ready:")[0])
    submit = indented_after(notes, "Submit a first job and watch its progress:")
    sh("\n".join(line for line in submit if " -w" not in line))
    wait_for(lambda: demo_release.phases().get("hello") == "Completed", 120, "hello Completed")
    actions = indented_after(notes, "Stop, start or restart it")
    assert [a.split()[2] for a in actions] == ["stop", "start", "restart"]
    for action in actions:
        assert "requested" in sh(action)
    # Its log, from the worker pod through PostgreSQL and the operator's aggregated API.
    [logs] = indented_after(notes, "Read what it logged")
    wait_for(lambda: "step 1/" in sh(logs), 60, "the sleep task's step lines in kubectl pgjobs logs")
    # Its queue paused and resumed through the PgQueue, whose status the operator keeps.
    pause, listing, resume = indented_after(notes, "Pause and resume its queue")
    assert sh(pause).strip().endswith("paused")
    wait_for(lambda: "true" in sh(listing).split(), 30, "the PgQueue shown paused")
    assert sh(resume).strip().endswith("resumed")


def indented_after(notes: str, heading: str) -> list[str]:
    """The indented lines under a heading of NOTES.txt, dedented by two spaces."""
    lines = notes.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line[2:])
    assert block, f"NOTES.txt shows nothing under {heading!r}"
    return block
