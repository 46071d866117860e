"""A throwaway Kubernetes control plane (etcd + kube-apiserver) on loopback.

The operator has to be tested against a real API server: structural-schema
pruning, CEL validation, the status subresource, watches, finalizers and RBAC
are where operators break, and no mock reproduces them. kind needs Docker, so
like controller-runtime's envtest we run the two binaries directly, built from
the Go module proxy by ``make controlplane`` (tools/controlplane/build.sh).

There is no controller-manager, scheduler or kubelet: objects are stored,
validated, watched and authorised, but nothing reconciles them (no pods from
Deployments, no namespace finalisation, no garbage collection).

Used by the e2e pytest fixtures and by ``make demo``; by hand::

    python -m pgjobs.devenv.controlplane up
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from pathlib import Path

from pgjobs.devenv import pki
from pgjobs.devenv.kubeconfigs import b64, run_kubectl, serviceaccount_kubeconfig, write_kubeconfig
from pgjobs.devenv.processes import (
    LOG_TAIL_LINES,
    ChildProcess,
    ProcessError,
    free_port,
    http_ok,
    log_tail,
    pid_alive,
    wait_until,
)

# Must match k8s.io/kubernetes in tools/controlplane/go.mod (a test checks).
K8S_VERSION = "1.36.3"

ADMIN_USER = "pgjobs-admin"
MASTERS_GROUP = "system:masters"
#: The name in the certificate the API server calls extension API servers with.
FRONT_PROXY_USER = "front-proxy-client"


class BinariesNotFoundError(RuntimeError):
    """The control-plane binaries have not been built yet."""


#: A control-plane process failed to start or to become ready, or a kubectl run failed.
ControlPlaneError = ProcessError


# --------------------------------------------------------------------------
# Binaries


@dataclasses.dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path


def cache_dir() -> Path:
    """Where build.sh puts binaries; outside the checkout so it survives clean clones."""
    root = os.environ.get("PGJOBS_CACHE")
    if root:
        return Path(root) / "controlplane"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "pgjobs" / "controlplane"


def bin_dir() -> Path:
    override = os.environ.get("PGJOBS_CONTROLPLANE_BIN")
    return Path(override) if override else cache_dir() / K8S_VERSION / "bin"


def find_binaries() -> Binaries:
    """Locate the built binaries, or explain how to build them."""
    directory = bin_dir()
    found = Binaries(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kubectl=directory / "kubectl",
    )
    missing = [p.name for p in dataclasses.astuple(found) if not os.access(p, os.X_OK)]
    if missing:
        raise BinariesNotFoundError(
            f"control-plane binaries missing in {directory}: {', '.join(missing)}. "
            f"Run `make controlplane` (builds kube-apiserver and kubectl v{K8S_VERSION} "
            "and the etcd they pin from the Go module proxy; needs Go; about 10 minutes "
            "on 2 cores the first time, seconds afterwards)."
        )
    return found


def go_available() -> bool:
    return shutil.which("go") is not None or Path("/usr/local/go/bin/go").exists()


# --------------------------------------------------------------------------
# Certificates


@dataclasses.dataclass(frozen=True)
class _PKI:
    ca: pki.Keypair
    ca_file: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    #: The aggregation layer: the API server calls extension API servers (the operator's
    #: aggregated API) with the front-proxy client certificate, and publishes its CA for them.
    front_proxy_ca: Path
    front_proxy_client: tuple[Path, Path]


def _make_pki(directory: Path) -> _PKI:
    directory.mkdir(mode=0o700)
    ca = pki.new_ca("pgjobs-dev-ca")
    serving_cert, serving_key = pki.write_keypair(
        directory, "apiserver", pki.new_cert(pki.common_name("kube-apiserver"), ca, server=True)
    )
    sa = pki.new_signing_key()
    front_proxy_ca = pki.new_ca("pgjobs-front-proxy-ca")
    return _PKI(
        ca=ca,
        ca_file=pki.write_file(directory / "ca.crt", ca.cert_pem(), 0o644),
        serving_cert=serving_cert,
        serving_key=serving_key,
        sa_key=pki.write_file(directory / "sa-signer.key", pki.private_key_pem(sa)),
        sa_pub=pki.write_file(directory / "sa-signer.pub", pki.public_key_pem(sa), 0o644),
        front_proxy_ca=pki.write_file(directory / "front-proxy-ca.crt", front_proxy_ca.cert_pem(), 0o644),
        front_proxy_client=pki.write_keypair(
            directory, "front-proxy-client", pki.client_cert(front_proxy_ca, FRONT_PROXY_USER)
        ),
    )


# --------------------------------------------------------------------------
# The control plane


_DIR_PREFIX = "pgjobs-controlplane-"


def _remove_stale_dirs() -> None:
    """Delete temp dirs left by runs that were killed (SIGKILL skips atexit)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # not ours to judge, or being created right now
        if not pid_alive(owner):
            shutil.rmtree(path, ignore_errors=True)


class _ServiceAccounts:
    """Kubeconfigs for ServiceAccounts, for any cluster with an admin kubeconfig and a work dir."""

    kubectl: Path
    kubeconfig: Path
    dir: Path

    def kubeconfig_for_serviceaccount(self, namespace: str, name: str, *, duration: str = "24h") -> Path:
        """Create the ServiceAccount if needed; a kubeconfig with a bound token for it."""
        return serviceaccount_kubeconfig(
            self.kubectl,
            self.kubeconfig,
            namespace,
            name,
            self.dir / f"sa-{namespace}-{name}.kubeconfig",
            duration=duration,
        )


class ControlPlane(_ServiceAccounts):
    """etcd + kube-apiserver on free loopback ports, in a private temp dir.

    Use as a context manager, or call start()/stop(). stop() is also
    registered with atexit, so an interrupted test run leaves no processes.
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        keep_dir: bool = False,
        ready_timeout: float = 90.0,
    ) -> None:
        self.binaries = binaries or find_binaries()
        self.keep_dir = keep_dir or os.environ.get("PGJOBS_KEEP_CONTROLPLANE") == "1"
        self.ready_timeout = ready_timeout
        _remove_stale_dirs()
        self.dir = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        self.log_dir = self.dir / "logs"
        self.log_dir.mkdir()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubectl = self.binaries.kubectl
        self._pki = _make_pki(self.dir / "pki")
        self.kubeconfig = self.kubeconfig_for_user(ADMIN_USER, [MASTERS_GROUP], name="admin")
        self._readyz_context = self._admin_ssl_context()
        self._etcd = self._etcd_process()
        self._apiserver = self._apiserver_process()
        self._started = False

    # -- lifecycle --------------------------------------------------------

    def start(self) -> ControlPlane:
        atexit.register(self.stop)
        self._started = True
        try:
            self._etcd.start()
            wait_until(self._etcd_healthy, self._etcd, self.ready_timeout, "etcd")
            self._start_apiserver()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Idempotent; the API server goes first so it does not spin on a dead etcd."""
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.stop)
        self._apiserver.stop()
        self._etcd.stop()
        if self.keep_dir:
            # Kept on purpose: not for the stale-dir sweep of the next run.
            (self.dir / "owner.pid").unlink(missing_ok=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port (for fault tests)."""
        self._apiserver.stop()
        self._start_apiserver()

    def stop_apiserver(self) -> None:
        """Leave the API server down until restart_apiserver() (outage tests)."""
        self._apiserver.stop()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log_files(self) -> dict[str, Path]:
        return {"etcd": self._etcd.log_file, "kube-apiserver": self._apiserver.log_file}

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(
            f"---- {name} ({path}) ----\n{log_tail(path, lines)}" for name, path in self.log_files.items()
        )

    # -- identities -------------------------------------------------------

    def kubeconfig_for_user(self, user: str, groups: Sequence[str] = (), *, name: str | None = None) -> Path:
        """A kubeconfig authenticating as `user` in `groups` by client certificate.

        The user has no rights until RoleBindings grant them: the way to test
        that RBAC manifests suffice.
        """
        cert = pki.client_cert(self._pki.ca, user, groups)
        return write_kubeconfig(
            self.dir / f"{name or user.replace(':', '_')}.kubeconfig",
            self.server,
            self._pki.ca.cert_pem(),
            user,
            {
                "client-certificate-data": b64(cert.cert_pem()),
                "client-key-data": b64(cert.key_pem()),
            },
        )

    def run_kubectl(
        self, *args: str, input: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl as admin (or as `kubeconfig`)."""
        return run_kubectl(self.kubectl, kubeconfig or self.kubeconfig, *args, input=input)

    # -- internals --------------------------------------------------------

    def _etcd_process(self) -> ChildProcess:
        client = f"http://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        self.etcd_url = client
        return ChildProcess(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=pgjobs",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=pgjobs={peer}",
                # Durability is worthless for a throwaway store; fsync is slow.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.log_dir / "etcd.log",
        )

    def _apiserver_process(self) -> ChildProcess:
        pki = self._pki
        return ChildProcess(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={self.dir / 'pki'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_file}",
                f"--secure-port={self.apiserver_port}",
                "--bind-address=127.0.0.1",
                # Loopback is not a valid Endpoints address, so the
                # `kubernetes` Service endpoint reconciler is turned off.
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # Needs the token controller of kube-controller-manager.
                "--disable-admission-plugins=ServiceAccount",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--profiling=false",
                # The aggregation layer. Without kube-proxy no Service address answers: an
                # APIService in these tests names an ExternalName Service of a loopback name,
                # which the API server dials as it is (tests/e2e/test_job_logs.py).
                f"--requestheader-client-ca-file={pki.front_proxy_ca}",
                f"--requestheader-allowed-names={FRONT_PROXY_USER}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.front_proxy_client[0]}",
                f"--proxy-client-key-file={pki.front_proxy_client[1]}",
            ],
            self.log_dir / "kube-apiserver.log",
        )

    def _start_apiserver(self) -> None:
        self._apiserver.start()
        wait_until(self._apiserver_ready, self._apiserver, self.ready_timeout, "kube-apiserver")

    def _etcd_healthy(self) -> bool:
        return http_ok(f"{self.etcd_url}/health")

    def _admin_ssl_context(self) -> ssl.SSLContext:
        # /readyz details need an authenticated caller; ssl wants files.
        cert = pki.client_cert(self._pki.ca, ADMIN_USER, [MASTERS_GROUP])
        crt, key = pki.write_keypair(self.dir / "pki", "readyz-client", cert)
        context = ssl.create_default_context(cafile=str(self._pki.ca_file))
        context.load_cert_chain(str(crt), str(key))
        return context

    def _apiserver_ready(self) -> bool:
        return http_ok(f"{self.server}/readyz", self._readyz_context)


class ExistingCluster(_ServiceAccounts):
    """A cluster we did not start (kind, a shared dev cluster): PGJOBS_TEST_KUBECONFIG.

    Offers the parts of ControlPlane that make sense without owning the
    processes; fault tests that restart the API server must skip on it.
    """

    def __init__(self, kubeconfig: Path, kubectl: Path | str) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl = Path(kubectl)
        self.log_dir: Path | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="pgjobs-cluster-"))
        view = json.loads(
            run_kubectl(self.kubectl, kubeconfig, "config", "view", "--minify", "-o", "json").stdout
        )
        self.server: str = view["clusters"][0]["cluster"]["server"]

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "(existing cluster: its logs are not collected by pgjobs)"

    def stop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def preferred_kubectl() -> Path | None:
    """The kubectl built with the control plane, else the one on PATH."""
    built = bin_dir() / "kubectl"
    if os.access(built, os.X_OK):
        return built
    found = shutil.which("kubectl")
    return Path(found) if found else None


# --------------------------------------------------------------------------
# CLI


def _up(args: argparse.Namespace) -> int:
    # SIGTERM (e.g. from `make demo` cleanup) should tear down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started = time.monotonic()
    with ControlPlane(keep_dir=args.keep) as cp:
        print(f"kube-apiserver v{K8S_VERSION} ready at {cp.server} in {time.monotonic() - started:.1f}s")
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"kubectl: {cp.kubectl}")
        print(f"logs:    {cp.log_dir}")
        print("Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgjobs.devenv.controlplane", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start etcd + kube-apiserver and wait for Ctrl-C")
    up.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    commands.add_parser("bin-dir", help="print where the binaries are expected")
    args = parser.parse_args(argv)
    if args.command == "bin-dir":
        print(bin_dir())
        return 0
    try:
        return _up(args)
    except (BinariesNotFoundError, ControlPlaneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
