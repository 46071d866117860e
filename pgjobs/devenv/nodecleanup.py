"""What the single-node cluster leaves on the host, set up and removed again.

A kubelet and containerd that stop leave their pods behind: container processes in the
`kubepods` cgroups, containerd shims, overlay and bind mounts under the cluster directory,
network namespaces under /run/netns, veth pairs on the bridge, iptables chains of kube-proxy
and of the CNI plugins, and the CNI result cache. `pgjobs.devenv.cluster.down` calls this
module so that a second `make cluster` starts from a clean host. Each step is idempotent and
tolerates what is already gone.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from pgjobs.devenv.nodeconfig import BRIDGE, CNI_NETWORK, Layout

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_KUBEPODS = "kubepods"
_NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
_CNI_CACHE = Path("/var/lib/cni/results")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def ensure_bridge(name: str, address: str) -> None:
    """The CNI bridge with the node's address, created before anything binds to that address."""
    if _run("ip", "link", "show", name).returncode != 0:
        _run("ip", "link", "add", name, "type", "bridge")
    if address.split("/")[0] not in _run("ip", "-4", "addr", "show", name).stdout:
        _run("ip", "addr", "add", address, "dev", name)
    _run("ip", "link", "set", name, "up")


def _kubepods_cgroups() -> list[Path]:
    """Every pod cgroup in every hierarchy, deepest first (the order rmdir needs)."""
    found: list[Path] = []
    for top in _CGROUP_ROOT.glob(f"*/{_KUBEPODS}"):
        found.extend(p for p in top.rglob("*") if p.is_dir())
        found.append(top)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(cgroups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for cgroup in cgroups:
        with contextlib.suppress(OSError):
            pids.update(int(line) for line in (cgroup / "cgroup.procs").read_text().split())
    return pids


def _processes_mentioning(text: str) -> set[int]:
    """Processes whose command line contains `text` (containerd's shims name its socket)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.add(int(entry.name))
    return found


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def remove_containers(layout: Layout) -> None:
    """Kill every pod's processes and containerd's shims (after the kubelet has stopped)."""
    for _ in range(10):
        pids = _cgroup_pids(_kubepods_cgroups()) | _processes_mentioning(str(layout.containerd_socket))
        pids.discard(os.getpid())
        if not pids:
            return
        _kill(pids)
        time.sleep(0.3)


def _mount_points() -> list[str]:
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            # Field 5 is the mount point, with spaces escaped as \040.
            points.append(line.split()[4].replace("\\040", " "))
    return points


def _unmount_under(layout: Layout) -> None:
    prefixes = (f"{layout.root}/", *(f"{d}/cni-" for d in _NETNS_DIRS))
    for _ in range(3):
        points = [p for p in _mount_points() if p.startswith(prefixes) or p == str(layout.root)]
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            _run("umount", "-l", point)


def _remove_netns() -> None:
    for directory in _NETNS_DIRS:
        for netns in directory.glob("cni-*"):
            with contextlib.suppress(OSError):
                netns.unlink()


def _remove_cgroups() -> None:
    for cgroup in _kubepods_cgroups():
        with contextlib.suppress(OSError):
            cgroup.rmdir()


#: Chains of the CNI plugins (masquerade per pod, portmap) and of Kubernetes (kube-proxy's that
#: `kube-proxy --cleanup` leaves, and the kubelet's own KUBE-FIREWALL and canaries).
_CHAIN_PREFIXES = ("CNI-", "KUBE-")


def _remove_chains(command: str) -> None:
    """Rules that jump to those chains or carry the CNI network's name, then the chains."""
    for table in ("nat", "filter", "mangle"):
        rules = _run(command, "-t", table, "-S").stdout.splitlines()
        for rule in rules:
            jumps = any(f" -j {prefix}" in rule for prefix in _CHAIN_PREFIXES)
            if rule.startswith("-A ") and (jumps or f'name: \\"{CNI_NETWORK}\\"' in rule):
                _run(command, "-t", table, *shlex.split(rule.replace("-A ", "-D ", 1)))
        chains = [
            r.split()[1] for r in rules if r.startswith("-N ") and r.split()[1].startswith(_CHAIN_PREFIXES)
        ]
        for chain in chains:
            _run(command, "-t", table, "-F", chain)
        for chain in chains:
            _run(command, "-t", table, "-X", chain)


def remove_host_state(layout: Layout, kube_proxy: Path) -> None:
    """After every process is gone: mounts, netns, cgroups, bridge, iptables, CNI cache."""
    _unmount_under(layout)
    _remove_netns()
    _remove_cgroups()
    if kube_proxy.exists():
        _run(str(kube_proxy), "--cleanup")
    for command in ("iptables", "ip6tables"):
        _remove_chains(command)
    _run("ip", "link", "delete", BRIDGE)
    for cached in _CNI_CACHE.glob(f"{CNI_NETWORK}-*"):
        with contextlib.suppress(OSError):
            cached.unlink()
