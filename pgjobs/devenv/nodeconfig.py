"""The configuration files of the single-node cluster (`make cluster`): one function per file.

Every address, port and path of the node is decided here, in `Layout`, so the process
definitions (pgjobs.devenv.cluster) and the files they read cannot disagree. The choices that
are not obvious:

- containerd's CRI plugin sets ``restrict_oom_score_adj``: root on this kind of machine lacks
  CAP_SYS_RESOURCE, so the negative oom_score_adj kubelet asks for (-998 for sandboxes) makes
  runc fail with "can't get final child's PID from pipe".
- kubelet runs with ``failCgroupV1: false`` (the machine has cgroup v1, which Kubernetes 1.35+
  refuses otherwise) and the cgroupfs driver (no systemd).
- Pods live on a CNI bridge whose gateway is also the node's address: the API server, the
  kubelet and the cluster DNS (CoreDNS, a host process) listen on it, so pods reach them
  without NAT.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

NODE_NAME = "pgjobs-node"
BRIDGE = "pgjobs0"
CNI_NETWORK = "pgjobs"
POD_SUBNET = "10.88.0.0/24"
NODE_IP = "10.88.0.1"
SERVICE_SUBNET = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"
APISERVER_PORT = 6443
KUBELET_PORT = 10250
CNI_PLUGIN_DIR = Path("/usr/lib/cni")

#: Names the API server's certificate must carry: pods dial the Service IP or these names.
APISERVER_NAMES = (
    NODE_IP,
    KUBERNETES_SERVICE_IP,
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
)


@dataclasses.dataclass(frozen=True)
class Ports:
    """Loopback ports chosen when the cluster comes up (kept in its state file)."""

    etcd_client: int
    etcd_peer: int
    controller_manager: int
    scheduler: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int
    dns_health: int
    dns_ready: int


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything of one cluster lives: all of it under `root`."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    def kubeconfig(self, component: str) -> Path:
        return self.config / f"{component}.kubeconfig"

    def make_dirs(self) -> None:
        for directory in (self.pki, self.logs, self.pids, self.config, self.cni_conf_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def _write_json(path: Path, document: object) -> Path:
    # JSON is YAML: kubelet and kube-proxy read their config files with a YAML parser.
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def containerd_config(layout: Layout, sandbox_image: str) -> Path:
    text = f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{layout.containerd_socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGIN_DIR}"
    conf_dir = "{layout.cni_conf_dir}"
"""
    path = layout.config / "containerd.toml"
    path.write_text(text)
    return path


def cni_config(layout: Layout) -> Path:
    return _write_json(
        layout.cni_conf_dir / f"10-{CNI_NETWORK}.conflist",
        {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(layout.cni_ipam_dir),
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
    )


def kubelet_config(layout: Layout, ports: Ports) -> Path:
    pki = layout.pki
    return _write_json(
        layout.config / "kubelet.yaml",
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": ports.kubelet_healthz,
            "tlsCertFile": str(pki / "kubelet.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "clusterDNS": [NODE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            # A shared dev machine: never evict or garbage-collect because its disk is busy.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "nodeStatusReportFrequency": "10s",
        },
    )


def kube_proxy_config(layout: Layout, ports: Ports) -> Path:
    return _write_json(
        layout.config / "kube-proxy.yaml",
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
            "mode": "iptables",
            "clusterCIDR": POD_SUBNET,
            "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
            "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
            # Leave the host's conntrack sysctls alone (they may be read-only here).
            "conntrack": {"maxPerCore": 0, "min": 0},
        },
    )


def corefile(layout: Layout, ports: Ports) -> Path:
    text = f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{ports.dns_health}
    ready 127.0.0.1:{ports.dns_ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {layout.kubeconfig("coredns")}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}}
"""
    path = layout.config / "Corefile"
    path.write_text(text)
    return path


#: What CoreDNS's kubernetes plugin reads; granted to the user of its client certificate.
COREDNS_RBAC = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "pgjobs-dev:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "pgjobs-dev:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "pgjobs-dev:coredns",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}],
        },
    ],
}
