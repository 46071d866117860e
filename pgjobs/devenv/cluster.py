"""A real single-node Kubernetes cluster on this machine: `make cluster` / `make cluster-down`.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy (built
from the Go module proxy by ``make controlplane``), containerd + runc + the CNI bridge plugin
(Debian packages) and CoreDNS (``tools/coredns/build.sh``) run as host processes, so pods run
for real: images imported into containerd, Deployments scaled by the controller-manager,
SIGTERM from the kubelet, Service names resolved by cluster DNS.

The processes outlive the command that starts them (``up`` returns once the node is Ready);
everything they own lives under one directory (`--dir`, default ``/var/lib/pgjobs-cluster``):
certificates, configs, pid files and one log per component. ``down`` stops the processes by
pid, then removes what they leave behind on the host (pod containers and their mounts, network
namespaces, cgroups, the bridge, iptables rules) and the directory. Needs root.

    python -m pgjobs.devenv.cluster up --coredns PATH --image ARCHIVE [--image ARCHIVE ...]
    python -m pgjobs.devenv.cluster down
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pgjobs.devenv import controlplane as cp
from pgjobs.devenv import kubeconfigs, nodecleanup, nodeconfig, pki, processes
from pgjobs.devenv.nodeconfig import Layout, Ports

DEFAULT_DIR = Path(os.environ.get("PGJOBS_CLUSTER_DIR", "/var/lib/pgjobs-cluster"))
SANDBOX_IMAGE = "localhost/pgjobs-pause:1"
_READY_TIMEOUT = 120.0
#: Start order; `down` stops them in reverse.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "containerd",
    "coredns",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    # After the kubelet: it waits for the Node object to learn the node's address.
    "kube-proxy",
)


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the log to read."""


# --------------------------------------------------------------------------
# Daemons: processes that outlive us, found again by their pid files


def _pid_file(layout: Layout, name: str) -> Path:
    return layout.pids / f"{name}.pid"


def _log_file(layout: Layout, name: str) -> Path:
    return layout.logs / f"{name}.log"


def read_pid(layout: Layout, name: str) -> int | None:
    try:
        pid = int(_pid_file(layout, name).read_text())
    except (OSError, ValueError):
        return None
    return pid if processes.pid_alive(pid) else None


def _spawn(layout: Layout, name: str, argv: Sequence[str]) -> None:
    with _log_file(layout, name).open("ab") as log:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not ours to stop on Ctrl-C: `down` does it by pid
        )
    _pid_file(layout, name).write_text(str(process.pid))


def _failure(layout: Layout, name: str, what: str) -> ClusterError:
    log = _log_file(layout, name)
    return ClusterError(f"{what}; last lines of {log}:\n{processes.log_tail(log)}")


def _wait(layout: Layout, name: str, ready: Callable[[], bool], timeout: float = _READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(layout, name) is None:
            raise _failure(layout, name, f"{name} exited")
        if ready():
            return
        time.sleep(0.25)
    raise _failure(layout, name, f"{name} not ready after {timeout:.0f}s")


def stop_daemon(layout: Layout, name: str, grace: float = 15.0) -> None:
    pid = read_pid(layout, name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while processes.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if processes.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    _pid_file(layout, name).unlink(missing_ok=True)


# --------------------------------------------------------------------------
# Certificates and kubeconfigs


#: Component → (user, groups) of its client certificate.
_IDENTITIES = {
    "admin": (cp.ADMIN_USER, [cp.MASTERS_GROUP]),
    "kube-controller-manager": ("system:kube-controller-manager", []),
    "kube-scheduler": ("system:kube-scheduler", []),
    "kubelet": (f"system:node:{nodeconfig.NODE_NAME}", ["system:nodes"]),
    "kube-proxy": ("system:kube-proxy", []),
    "coredns": ("system:coredns", []),
}


def _make_pki(layout: Layout) -> None:
    directory = layout.pki
    ca = pki.new_ca("pgjobs-cluster-ca")
    pki.write_keypair(directory, "ca", ca)
    apiserver = pki.new_cert(
        pki.common_name("kube-apiserver"), ca, server=True, names=nodeconfig.APISERVER_NAMES
    )
    pki.write_keypair(directory, "apiserver", apiserver)
    kubelet = pki.new_cert(
        pki.common_name(nodeconfig.NODE_NAME),
        ca,
        server=True,
        names=(nodeconfig.NODE_IP, nodeconfig.NODE_NAME),
    )
    pki.write_keypair(directory, "kubelet", kubelet)
    # The API server's identity towards the kubelet (logs, exec, port-forward).
    pki.write_keypair(
        directory, "apiserver-kubelet-client", pki.client_cert(ca, "kube-apiserver", ["system:masters"])
    )
    # The aggregation layer: the API server calls extension API servers (the operator's external
    # metrics API) with this client certificate, and publishes its CA for them to check.
    front_proxy_ca = pki.new_ca("pgjobs-front-proxy-ca")
    pki.write_keypair(directory, "front-proxy-ca", front_proxy_ca)
    pki.write_keypair(directory, "front-proxy-client", pki.client_cert(front_proxy_ca, "front-proxy-client"))
    signer = pki.new_signing_key()
    pki.write_file(directory / "sa.key", pki.private_key_pem(signer))
    pki.write_file(directory / "sa.pub", pki.public_key_pem(signer), 0o644)
    server = f"https://{nodeconfig.NODE_IP}:{nodeconfig.APISERVER_PORT}"
    for component, (user, groups) in _IDENTITIES.items():
        cert = pki.client_cert(ca, user, groups)
        path = layout.admin_kubeconfig if component == "admin" else layout.kubeconfig(component)
        kubeconfigs.write_kubeconfig(
            path,
            server,
            ca.cert_pem(),
            user,
            {
                "client-certificate-data": kubeconfigs.b64(cert.cert_pem()),
                "client-key-data": kubeconfigs.b64(cert.key_pem()),
            },
        )


# --------------------------------------------------------------------------
# Component command lines


def _argv(layout: Layout, ports: Ports, bins: Path, coredns: Path) -> dict[str, list[str]]:
    pki_dir = layout.pki
    node_ip = nodeconfig.NODE_IP
    etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    return {
        "etcd": [
            str(bins / "etcd"),
            "--name=pgjobs",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=pgjobs={peer_url}",
            "--unsafe-no-fsync=true",  # a dev cluster: speed over durability
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={node_ip}",
            f"--advertise-address={node_ip}",
            f"--secure-port={nodeconfig.APISERVER_PORT}",
            f"--cert-dir={pki_dir}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--client-ca-file={pki_dir / 'ca.crt'}",
            f"--kubelet-client-certificate={pki_dir / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki_dir / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki_dir / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={nodeconfig.SERVICE_SUBNET}",
            f"--service-account-issuer=https://kubernetes.default.svc.{nodeconfig.CLUSTER_DOMAIN}",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            "--allow-privileged=true",
            "--profiling=false",
            f"--requestheader-client-ca-file={pki_dir / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki_dir / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki_dir / 'front-proxy-client.key'}",
            # Call extension API servers on their pods' addresses, which the host routes to.
            "--enable-aggregator-routing=true",
        ],
        "containerd": [
            "containerd",
            f"--config={nodeconfig.containerd_config(layout, SANDBOX_IMAGE)}",
        ],
        "coredns": [str(coredns), f"-conf={nodeconfig.corefile(layout, ports)}"],
        "kube-controller-manager": [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
            f"--service-account-private-key-file={pki_dir / 'sa.key'}",
            f"--root-ca-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--service-cluster-ip-range={nodeconfig.SERVICE_SUBNET}",
        ],
        "kube-scheduler": [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={layout.kubeconfig('kube-scheduler')}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
        ],
        "kube-proxy": [
            str(bins / "kube-proxy"),
            f"--config={nodeconfig.kube_proxy_config(layout, ports)}",
        ],
        "kubelet": [
            str(bins / "kubelet"),
            f"--config={nodeconfig.kubelet_config(layout, ports)}",
            f"--kubeconfig={layout.kubeconfig('kubelet')}",
            f"--root-dir={layout.kubelet_root}",
            f"--hostname-override={nodeconfig.NODE_NAME}",
            f"--node-ip={node_ip}",
        ],
    }


# --------------------------------------------------------------------------
# Bring-up


def _new_ports() -> Ports:
    return Ports(**{f.name: processes.free_port() for f in Ports.__dataclass_fields__.values()})


def _kubectl(layout: Layout, bins: Path, *args: str, stdin: str | None = None) -> str:
    return kubeconfigs.run_kubectl(bins / "kubectl", layout.admin_kubeconfig, *args, input=stdin).stdout


def _quiet(check: Callable[[], bool]) -> Callable[[], bool]:
    def attempt() -> bool:
        try:
            return check()
        except (processes.ProcessError, subprocess.SubprocessError, OSError):
            return False

    return attempt


def _node_ready(layout: Layout, bins: Path) -> bool:
    status = _kubectl(
        layout,
        bins,
        "get",
        "node",
        nodeconfig.NODE_NAME,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    )
    return status.strip() == "True"


def _host_network() -> None:
    nodecleanup.ensure_bridge(nodeconfig.BRIDGE, f"{nodeconfig.NODE_IP}/24")
    for key, value in (("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1")):
        path = Path("/proc/sys") / key
        if not path.exists():
            subprocess.run(["modprobe", "br_netfilter"], check=False, capture_output=True)
        path.write_text(value)


def import_images(layout: Layout, archives: Sequence[Path]) -> None:
    for archive in archives:
        result = subprocess.run(
            [
                "ctr",
                f"--address={layout.containerd_socket}",
                "-n",
                "k8s.io",
                "images",
                "import",
                str(archive),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"importing {archive} into containerd failed: {result.stderr.strip()}")


def up(layout: Layout, coredns: Path, images: Sequence[Path]) -> float:
    """Start every component and wait until the node is Ready; the seconds it took."""
    started = time.monotonic()
    bins = cp.bin_dir()
    layout.make_dirs()
    ports = _new_ports()
    _make_pki(layout)
    nodeconfig.cni_config(layout)
    _host_network()
    argv = _argv(layout, ports, bins, coredns)
    layout.state_file.write_text(json.dumps({"ports": ports.__dict__, "bin_dir": str(bins)}))
    admin = processes.http_ok
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    readiness: dict[str, Callable[[], bool]] = {
        "etcd": lambda: admin(f"http://127.0.0.1:{ports.etcd_client}/health"),
        "kube-apiserver": lambda: admin(
            f"https://{nodeconfig.NODE_IP}:{nodeconfig.APISERVER_PORT}/livez", context
        ),
        "containerd": lambda: layout.containerd_socket.exists(),
        "coredns": lambda: admin(f"http://127.0.0.1:{ports.dns_ready}/ready"),
        "kube-proxy": lambda: admin(f"http://127.0.0.1:{ports.proxy_healthz}/healthz"),
    }
    for name in COMPONENTS:
        if name == "coredns":
            _kubectl(layout, bins, "apply", "-f", "-", stdin=json.dumps(nodeconfig.COREDNS_RBAC))
        _spawn(layout, name, argv[name])
        if name in readiness:
            _wait(layout, name, readiness[name])
        if name == "containerd":
            import_images(layout, images)
    _wait(layout, "kubelet", _quiet(lambda: _node_ready(layout, bins)))
    # Pods need the default ServiceAccount, which the controller-manager creates.
    _wait(
        layout,
        "kube-controller-manager",
        _quiet(lambda: bool(_kubectl(layout, bins, "get", "serviceaccount", "default", "-o", "name"))),
    )
    return time.monotonic() - started


def running(layout: Layout) -> bool:
    return layout.state_file.exists() and all(read_pid(layout, name) for name in COMPONENTS)


def down(layout: Layout, *, save_logs: bool = False) -> Path | None:
    """Stop every component and remove all the node left on the host; safe to repeat.

    With `save_logs`, the components' logs are first copied to a new temp dir, returned."""
    saved = None
    if save_logs and layout.logs.is_dir():
        saved = Path(tempfile.mkdtemp(prefix="pgjobs-cluster-logs-"))
        shutil.copytree(layout.logs, saved, dirs_exist_ok=True)
    bins = cp.bin_dir()
    for name in ("kube-controller-manager", "kube-scheduler", "kubelet"):
        stop_daemon(layout, name)
    nodecleanup.remove_containers(layout)
    for name in reversed(COMPONENTS):
        stop_daemon(layout, name)
    nodecleanup.remove_host_state(layout, bins / "kube-proxy")
    shutil.rmtree(layout.root, ignore_errors=True)
    return saved


# --------------------------------------------------------------------------
# CLI


def _up_command(args: argparse.Namespace) -> int:
    layout = Layout(args.dir)
    if running(layout):
        import_images(layout, args.image)
        print(f"cluster already running in {layout.root}; images imported again")
    else:
        if layout.root.exists():
            down(layout)  # the remains of a cluster whose processes are gone
        try:
            seconds = up(layout, args.coredns, args.image)
        except ClusterError as exc:
            print(f"error: {exc}\nlogs of every component: {layout.logs}", file=sys.stderr)
            print("`make cluster-down` removes what was started.", file=sys.stderr)
            return 1
        print(f"node {nodeconfig.NODE_NAME} Ready in {seconds:.1f}s; logs in {layout.logs}")
    print(f"export KUBECONFIG={layout.admin_kubeconfig}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgjobs.devenv.cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "up", help="start the cluster (a no-op when it runs) and print its KUBECONFIG"
    )
    start.add_argument("--coredns", type=Path, required=True, help="the CoreDNS binary")
    start.add_argument("--image", type=Path, action="append", default=[], help="an OCI archive to import")
    commands.add_parser("down", help="stop the cluster and remove everything it left on the host")
    commands.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "error: the cluster needs root (containerd, kubelet, iptables, mounts); run it as root",
            file=sys.stderr,
        )
        return 1
    if args.command == "up":
        return _up_command(args)
    if args.command == "down":
        down(Layout(args.dir))
        print(f"cluster in {args.dir} stopped and removed")
        return 0
    print(Layout(args.dir).admin_kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
