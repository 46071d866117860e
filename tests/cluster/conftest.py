"""Fixtures for tests on real pods: the single-node cluster, the image and the chart.

The cluster is the one `make cluster` runs, or, when none runs, one started here for the session
and torn down after it (pgjobs.devenv.cluster). Each test module installs the chart as a user
would (`helm install` with deploy/cluster/values.yaml) in a namespace of its own, with the
operator watching only that namespace, and uninstalls it afterwards. When a test fails, the
tail of the pods' logs and of the node's components is attached to its report.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgjobs.devenv import cluster as node_cluster
from pgjobs.devenv import nodeconfig, processes
from tests.cluster.helpers import ROOT, Release

_node_key = pytest.StashKey[nodeconfig.Layout]()
_release_key = pytest.StashKey[list[Release]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and "release" in getattr(item, "fixturenames", ()):
        for release in item.config.stash.get(_release_key, []):
            report.sections.append((f"pods of {release.namespace}", release.diagnostics()))
        layout = item.config.stash.get(_node_key, None)
        if layout is not None:
            tails = [
                f"---- {name} ({layout.logs / f'{name}.log'}) ----\n"
                + processes.log_tail(layout.logs / f"{name}.log", 15)
                for name in ("kubelet", "containerd", "kube-controller-manager")
            ]
            report.sections.append(("node logs (tail)", "\n".join(tails)))
    return report


def _script(script: str, *args: str) -> str:
    return subprocess.run([str(ROOT / script), *args], capture_output=True, text=True, check=True).stdout


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the cluster tests: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Iterator[nodeconfig.Layout]:
    """A running single-node cluster: `make cluster`'s, or one started for this session."""
    layout = nodeconfig.Layout(node_cluster.DEFAULT_DIR)
    started_here = False
    if os.geteuid() != 0:
        _unavailable("the cluster tests need root (containerd, kubelet, iptables)")
    coredns = Path(_script("tools/coredns/build.sh", "--bin").strip())
    # The base image only builds the others; pods never run it.
    listed = [line.split() for line in _script("deploy/image/build.sh", "--archives").splitlines()]
    archives = [Path(path) for ref, path in listed if "-base:" not in ref]
    missing = [str(p) for p in (coredns, *archives) if not p.exists()]
    if missing:
        _unavailable(f"not built: {', '.join(missing)} (make coredns image)")
    if node_cluster.running(layout):
        node_cluster.import_images(layout, archives)  # what runs is what was just built
    else:
        if layout.root.exists():
            node_cluster.down(layout)
        node_cluster.up(layout, coredns, archives)
        started_here = True
    pytestconfig.stash[_node_key] = layout
    try:
        yield layout
    finally:
        if started_here:
            # The components' logs outlive the cluster only when something failed.
            saved = node_cluster.down(layout, save_logs=request.session.testsfailed > 0)
            if saved:
                print(f"\ncluster torn down; component logs kept in {saved}")


@pytest.fixture(scope="module")
def release(
    node: nodeconfig.Layout, request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[Release]:
    """The chart installed in a fresh namespace; module parameters come from `chart_values`."""
    values: dict[str, Any] = getattr(request.module, "CHART_VALUES", {})
    name = f"pgj-{uuid.uuid4().hex[:6]}"
    rel = Release(node, name=name, namespace=name)
    pytestconfig.stash.setdefault(_release_key, []).append(rel)
    rel.install(values)
    try:
        yield rel
    finally:
        pytestconfig.stash[_release_key].remove(rel)
        rel.remove()
