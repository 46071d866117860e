"""The hot path's own encoding and parsing (`pgjobs/store/hotpath.py`), without a server."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import struct
from typing import Any

import pytest

from pgjobs.store import hotpath, queries


def test_placeholders_become_numbered_and_repeats_share_a_number() -> None:
    text, names = hotpath.to_positional("SELECT %(a)s, %(b)s, %(a)s, '100%%', format('%%s', %(c)s)")
    assert text == "SELECT $1, $2, $1, '100%', format('%s', $3)"
    assert names == ("a", "b", "c")


def test_a_placeholder_of_another_form_is_refused() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        hotpath.to_positional("SELECT %(a)d")


def test_the_hot_statement_converts_with_a_type_for_every_parameter() -> None:
    text, names = hotpath.to_positional(queries.STATEMENTS["job_complete_and_claim"])
    assert "%(" not in text and set(names) == set(hotpath.PARAMETER_TYPES)
    assert f"${len(names)}" in text


@pytest.mark.parametrize(
    ("values", "literal"),
    [
        (["default"], '{"default"}'),
        (["a", "b c"], '{"a","b c"}'),
        (["NULL", "x,y", "{}"], '{"NULL","x,y","{}"}'),
        (['say "hi"', "back\\slash"], '{"say \\"hi\\"","back\\\\slash"}'),
    ],
)
def test_text_arrays_quote_every_element(values: list[str], literal: str) -> None:
    assert hotpath.text_array(values) == literal


class FakeResult:
    """What parse_answer reads of a PGresult: one row of binary values."""

    def __init__(self, values: list[bytes | None]) -> None:
        self.values = values

    def get_value(self, row: int, column: int) -> bytes | None:
        assert row == 0
        return self.values[column]


def _int8(value: int) -> bytes:
    return struct.pack(">q", value)


def _int4(value: int) -> bytes:
    return struct.pack(">i", value)


def _stamp(value: datetime.datetime) -> bytes:
    since = value - datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    return _int8(since // datetime.timedelta(microseconds=1))


def test_a_claimed_row_is_parsed_from_binary() -> None:
    created = datetime.datetime(2026, 11, 28, 19, 0, 0, 123456, tzinfo=datetime.UTC)
    started = created + datetime.timedelta(milliseconds=2)
    args: dict[str, Any] = {"url": "x", "n": [1, 2], "é": None}
    row = [
        _int8(1), _int8(42), "résumé".encode(), b"\x01" + json.dumps(args).encode(), _int4(2),
        _int4(3), _int4(10), None, _int8(77), _stamp(created), _stamp(started), None,
    ]  # fmt: skip
    completed, job, throttled_for = hotpath.parse_answer(FakeResult(row))  # type: ignore[arg-type]
    assert completed is True and job is not None and throttled_for is None
    assert (job.id, job.task, job.args, job.lease) == (42, "résumé", args, 77)
    assert (job.attempt, job.max_attempts, job.backoff_seconds, job.timeout_seconds) == (2, 3, 10, None)
    assert (job.created_at, job.started_at) == (created, started)


def test_a_row_without_a_claim_carries_only_the_completion() -> None:
    empty: list[bytes | None] = [_int8(0)] + [None] * 11
    assert hotpath.parse_answer(FakeResult(empty)) == (False, None, None)  # type: ignore[arg-type]
    throttled = [*empty[:-1], struct.pack(">d", 0.25)]
    assert hotpath.parse_answer(FakeResult(throttled)) == (False, None, 0.25)  # type: ignore[arg-type]
    with_timeout = [_int8(0), _int8(1), b"t", b"\x01{}", _int4(1), _int4(1), _int4(0), _int4(30),
                    _int8(1), _int8(0), _int8(0), None]  # fmt: skip
    _, job, _ = hotpath.parse_answer(FakeResult(with_timeout))  # type: ignore[arg-type]
    assert job is not None and job.timeout_seconds == 30


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def _kept_reader() -> tuple[hotpath._KeptReader, socket.socket, socket.socket]:
    ours, server = socket.socketpair()
    ours.setblocking(False)
    return hotpath._KeptReader(asyncio.get_running_loop(), ours.fileno()), ours, server


def test_a_kept_reader_stays_registered_through_the_echo_after_a_round_trip() -> None:
    async def round_trip(reader: hotpath._KeptReader, ours: socket.socket) -> bytes:
        await reader.readable()
        return ours.recv(100)  # read in the same step as the wake-up, as `_results` does

    async def scenario() -> None:
        reader, ours, server = _kept_reader()
        try:
            for answer in (b"first", b"second"):
                waiting = asyncio.ensure_future(round_trip(reader, ours))
                await _turns(2)
                server.send(answer)
                assert await waiting == answer
                # The loop's next poll still saw the answer unread: a wake-up with nobody waiting.
                await _turns(3)
                assert reader.registered
        finally:
            reader.stop()
            ours.close()
            server.close()

    asyncio.run(scenario())


def test_a_kept_reader_stops_watching_input_nobody_waits_for() -> None:
    async def watch_again(reader: hotpath._KeptReader) -> bool:
        await reader.readable()
        return reader.registered

    async def scenario() -> None:
        reader, ours, server = _kept_reader()
        try:
            waiting = asyncio.ensure_future(reader.readable())
            await _turns(2)
            server.close()  # the peer goes away: readable for ever, and nobody reads
            await waiting
            await _turns(5)
            assert not reader.registered
            assert await watch_again(reader)  # the next round trip watches again
        finally:
            reader.stop()
            ours.close()

    asyncio.run(scenario())
