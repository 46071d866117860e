"""Where the probe endpoints listen: the worker's /healthz and /readyz (`--health-address`) and the
operator's liveness endpoint (`--liveness-address`). By default every interface in a pod (the
kubelet probes the pod's IP), the loopback elsewhere; checked on real sockets."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pgjobs import probes
from pgjobs.cli import services
from pgjobs.cli.main import build_parser
from pgjobs.operator import running
from pgjobs.operator.settings import OperatorSettings
from pgjobs.worker import health

IN_A_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}


def outward_address() -> str | None:
    """This machine's address towards the network (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


async def answers(address: str, port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection(address, port)
    except OSError:
        return False
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response.startswith(b"HTTP/1.1 200")


async def bound_and_reachable(address: str) -> tuple[str, bool, bool | None]:
    """Where the worker's health server listens, whether the loopback and the machine's outward
    address reach it (None: the machine has no such address)."""
    server = await health.serve(0, lambda: None, address)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        outward = outward_address()
        return (
            host,
            await answers("127.0.0.1", port),
            None if outward is None else await answers(outward, port),
        )
    finally:
        server.close()
        await server.wait_closed()


def test_the_default_is_every_interface_in_a_pod_and_the_loopback_elsewhere() -> None:
    assert probes.probe_address("", IN_A_POD) == "0.0.0.0"
    assert probes.probe_address("", {}) == "127.0.0.1"
    assert probes.probe_address("10.0.0.7", IN_A_POD) == "10.0.0.7"
    assert probes.probe_address("::1", {}) == "::1"


def test_outside_a_pod_the_health_server_answers_the_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    host, loopback, outward = asyncio.run(bound_and_reachable(""))
    assert (host, loopback) == ("127.0.0.1", True)
    assert outward in (False, None)


def test_in_a_pod_the_health_server_answers_the_pods_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    host, loopback, outward = asyncio.run(bound_and_reachable(""))
    assert (host, loopback) == ("0.0.0.0", True)
    assert outward in (True, None)


def test_a_set_address_wins_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    host, loopback, outward = asyncio.run(bound_and_reachable("127.0.0.1"))
    assert (host, loopback) == ("127.0.0.1", True)
    assert outward in (False, None)


def test_the_operator_liveness_url_follows_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert running.liveness_endpoint(OperatorSettings()) == "http://127.0.0.1:8080/healthz"
    assert running.liveness_endpoint(OperatorSettings(liveness_port=0)) is None
    assert running.liveness_endpoint(OperatorSettings(liveness_address="::")) == "http://[::]:8080/healthz"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert running.liveness_endpoint(OperatorSettings(liveness_port=9)) == "http://0.0.0.0:9/healthz"


def test_the_options_reach_the_settings() -> None:
    parser = build_parser()
    operator = parser.parse_args(["operator", "--liveness-address", "10.0.0.7"])
    worker = parser.parse_args(["worker", "--health-address", "10.0.0.8"])
    assert services.operator_settings(operator).liveness_address == "10.0.0.7"
    assert services.worker_settings(worker).health_address == "10.0.0.8"
