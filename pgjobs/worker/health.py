"""The worker's probe endpoints for the kubelet, served by the worker's own event loop.

- ``/healthz`` (liveness) answers whenever the event loop runs and the heartbeat loop turns. It
  is served by that loop, not a thread, so a loop blocked by a task that never yields stops
  answering and the kubelet restarts the pod; its running jobs are rescued after the stall
  timeout. A heartbeat loop that stopped turning (each turn ends within the stall timeout, a
  failed heartbeat included) gets 503: a worker alive to the kubelet but silent to PostgreSQL
  is a zombie. It does not depend on the database answering: an outage must not restart every
  worker at once (the heartbeat loop keeps turning, with failed heartbeats, through one).
- ``/readyz`` (readiness) answers 200 while the worker is in contact with PostgreSQL (its last
  heartbeat is younger than the stall timeout) and not shutting down, else 503. A rollout
  with ``maxUnavailable: 0`` waits for new pods to be ready before it stops old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pgjobs import probes

_REQUEST_LINE_LIMIT = 1024
_READ_TIMEOUT = 5.0


def _response(status: int, body: str) -> bytes:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


def answer(
    path: str, ready: Callable[[], str | None], alive: Callable[[], str | None] = lambda: None
) -> bytes:
    """The response to GET `path`; `ready` and `alive` give None when so, else the reason not."""
    if path == "/healthz":
        reason = alive()
        return _response(200, "ok\n") if reason is None else _response(503, reason + "\n")
    if path == "/readyz":
        reason = ready()
        return _response(200, "ok\n") if reason is None else _response(503, reason + "\n")
    return _response(404, "not found\n")


async def _serve_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ready: Callable[[], str | None],
    alive: Callable[[], str | None],
) -> None:
    try:
        async with asyncio.timeout(_READ_TIMEOUT):
            line = await reader.readline()
        parts = line[:_REQUEST_LINE_LIMIT].decode("latin-1").split()
        path = parts[1].split("?")[0] if len(parts) >= 2 else ""
        writer.write(answer(path, ready, alive))
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(
    port: int,
    ready: Callable[[], str | None],
    address: str = "",
    alive: Callable[[], str | None] = lambda: None,
) -> asyncio.Server:
    """Listen on `address` (`--health-address`; "": every interface in a pod, where the kubelet
    probes the pod's IP, else the loopback: `probes.probe_address`)."""
    return await asyncio.start_server(
        lambda r, w: _serve_one(r, w, ready, alive),
        host=probes.probe_address(address),
        port=port,
        limit=_REQUEST_LINE_LIMIT,
    )
