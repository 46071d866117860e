"""The worker's probe endpoints (pgjobs.worker.health), served by a real asyncio server."""

from __future__ import annotations

import asyncio

from pgjobs.worker import health


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return int(head.split()[1]), body


async def _probe(reason: str | None, *paths: str) -> list[tuple[int, str]]:
    server = await health.serve(0, lambda: reason)
    port = server.sockets[0].getsockname()[1]
    try:
        return [await _get(port, path) for path in paths]
    finally:
        server.close()
        await server.wait_closed()


def test_liveness_answers_whatever_the_database_state() -> None:
    assert asyncio.run(_probe("no heartbeat reached PostgreSQL for 20s", "/healthz")) == [(200, "ok\n")]


def test_readiness_gives_the_reason_it_is_not_ready() -> None:
    ready, not_ready = asyncio.run(_probe(None, "/readyz")), asyncio.run(_probe("shutting down", "/readyz"))
    assert ready == [(200, "ok\n")]
    assert not_ready == [(503, "shutting down\n")]


def test_unknown_paths_and_garbage_get_404() -> None:
    assert asyncio.run(_probe(None, "/metrics", "/readyz?x=1"))[0][0] == 404
    assert health.answer("", lambda: None).startswith(b"HTTP/1.1 404")


def test_liveness_fails_when_the_heartbeat_loop_stopped_turning() -> None:
    stuck = health.answer("/healthz", lambda: None, lambda: "the heartbeat loop has not turned for 40s")
    assert stuck.startswith(b"HTTP/1.1 503") and stuck.endswith(b"has not turned for 40s\n")


def test_a_worker_is_alive_while_its_heartbeat_loop_turns_even_without_the_database() -> None:
    from pgjobs.store.connecting import DatabaseSettings
    from pgjobs.worker.running import Worker
    from pgjobs.worker.settings import WorkerSettings

    worker = Worker(DatabaseSettings(), WorkerSettings(stall_timeout=5, heartbeat_interval=1))
    worker._last_heartbeat -= 60  # no heartbeat answered for a minute: an outage
    assert worker.not_alive_reason() is None and worker.not_ready_reason() is not None
    worker._heartbeat_turned -= 60  # and the loop itself stuck for a minute: a zombie
    reason = worker.not_alive_reason()
    assert reason is not None and reason.startswith("the heartbeat loop has not turned for 60s")
