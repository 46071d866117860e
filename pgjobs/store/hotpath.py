"""The worker's hot statement, `job_complete_and_claim`, run straight through libpq (`psycopg.pq`),
and its notifications read the same way (`receive_notifications`).

A draining worker runs this one statement per job, and psycopg's general execute machinery
(query conversion, parameter dumping, cursor and row building, generator-based waiting) cost
more CPU than the rest of the worker together. Here the statement is prepared once per
connection under a fixed name, parameters go as pre-encoded text, the answer comes back in
binary and only its known columns are parsed. The SQL itself stays in `queries.sql`.

A connection opened without prepared statements (psycopg's `prepare_threshold` None, see
`connecting.DatabaseSettings.prepared_statements`: PgBouncer before 1.21 in transaction mode
hands each transaction to any server connection, where a named statement may exist already or
not at all) gets the same statement unnamed, parsed again on every call.

Everything else keeps using psycopg normally on the same connection: we hold the connection's
lock while we use `conn.pgconn`, always read every result before letting go, and raise
psycopg's own errors, so a broken connection is an `OperationalError` as anywhere else.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import struct
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import errors, pq

from pgjobs.store.queries import STATEMENTS, Connection
from pgjobs.store.records import ClaimAnswer, ClaimedJob

QUERY = "job_complete_and_claim"
#: Our own name on every connection; psycopg names its prepared statements `_pg3_*`.
STATEMENT_NAME = b"pgjobs_job_complete_and_claim"

# Type OIDs of PostgreSQL's built-in types (fixed in pg_type.dat, the same on every server).
_JSONB, _TEXT, _INT8, _UUID, _TEXT_ARRAY = 3802, 25, 20, 2950, 1009
_INT4, _TIMESTAMPTZ, _BOOL, _FLOAT8 = 23, 1184, 16, 701
PARAMETER_TYPES = {
    "result": _JSONB,
    "message": _TEXT,
    "job_id": _INT8,
    "lease": _INT8,
    "worker_id": _UUID,
    "queues": _TEXT_ARRAY,
    "tasks": _TEXT_ARRAY,
    "was_idle": _BOOL,
}
#: The answer's columns in order, as the parsing below reads them.
COLUMNS = (
    ("completed", _INT8),
    ("id", _INT8),
    ("task", _TEXT),
    ("args", _JSONB),
    ("attempt", _INT4),
    ("max_attempts", _INT4),
    ("backoff_seconds", _INT4),
    ("timeout_seconds", _INT4),
    ("lease", _INT8),
    ("created_at", _TIMESTAMPTZ),
    ("started_at", _TIMESTAMPTZ),
    ("throttled_for", _FLOAT8),
)
_BINARY = 1
_PLACEHOLDER = re.compile(r"%%|%\((?P<name>[A-Za-z_][A-Za-z0-9_]*)\)s")
_INT8_BE = struct.Struct(">q")
_INT4_BE = struct.Struct(">i")
_FLOAT8_BE = struct.Struct(">d")
_PG_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def to_positional(statement: str) -> tuple[str, tuple[str, ...]]:
    """psycopg's `%(name)s` placeholders as libpq's `$n` (a repeated name keeps its number), and
    `%%` as `%`; returns the statement and the names in number order ($1 is names[0])."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match["name"]
        if name is None:
            return "%"
        return f"${names.setdefault(name, len(names) + 1)}"

    text = _PLACEHOLDER.sub(number, statement)
    if re.search(r"%\(", text):
        raise ValueError(f"placeholder not of the form %(name)s in: {statement}")
    return text, tuple(names)


def text_array(values: Sequence[str]) -> str:
    """A text[] literal with every element quoted, so commas, braces and NULL stay data."""
    quoted = ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "{" + ",".join(quoted) + "}"


def parse_answer(result: pq.abc.PGresult) -> ClaimAnswer:
    """The statement's one row, as sent in binary."""
    value = result.get_value
    completed = _INT8_BE.unpack(value(0, 0) or b"")[0] > 0
    job_id = value(0, 1)
    if job_id is None:
        throttled = value(0, 11)
        return ClaimAnswer(completed, None, None if throttled is None else _FLOAT8_BE.unpack(throttled)[0])
    timeout = value(0, 7)
    job = ClaimedJob(
        id=_INT8_BE.unpack(job_id)[0],
        task=bytes(value(0, 2) or b"").decode(),
        args=json.loads(bytes(value(0, 3) or b"\x01{}")[1:]),  # binary jsonb: version byte 1, text
        attempt=_INT4_BE.unpack(value(0, 4) or b"")[0],
        max_attempts=_INT4_BE.unpack(value(0, 5) or b"")[0],
        backoff_seconds=_INT4_BE.unpack(value(0, 6) or b"")[0],
        timeout_seconds=None if timeout is None else _INT4_BE.unpack(timeout)[0],
        lease=_INT8_BE.unpack(value(0, 8) or b"")[0],
        created_at=_timestamptz(value(0, 9)),
        started_at=_timestamptz(value(0, 10)),
    )
    return ClaimAnswer(completed, job)


def _timestamptz(data: bytes | None) -> datetime.datetime:
    """Binary timestamptz: microseconds since 2000-01-01 UTC (returned in UTC)."""
    return _PG_EPOCH + datetime.timedelta(microseconds=_INT8_BE.unpack(data or b"")[0])


class _Statement:
    """The statement's text and parameter order, derived once from queries.sql."""

    def __init__(self) -> None:
        text, self.names = to_positional(STATEMENTS["job_complete_and_claim"])
        self.text = text.encode()
        self.types = [PARAMETER_TYPES[name] for name in self.names]


_STATEMENT = _Statement()
#: Connections on which the statement is prepared, or its answer checked when it is sent unnamed
#: (a reconnect is a new connection), with their client encoding (psycopg's `conn.info.encoding`
#: builds an object and asks libpq every time).
_prepared: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()
#: Encoded worker id, queues and tasks, which stay the same for a worker's whole life.
_identities: dict[
    tuple[uuid.UUID, tuple[str, ...], tuple[str, ...] | None], tuple[bytes, bytes, bytes | None]
] = {}


async def complete_and_claim(
    conn: Connection,
    job_id: int | None,
    lease: int | None,
    result: Any,
    message: str | None,
    worker_id: uuid.UUID,
    queues: Sequence[str],
    was_idle: bool | None = False,
    tasks: Sequence[str] | None = None,
) -> ClaimAnswer:
    """Complete job `job_id` (fenced by `lease`; None: complete nothing) and claim the next one
    of `queues` whose task is one of `tasks` (None: any); `was_idle`: the calling slot is counted
    among its worker's idle slots (None: not counted either way, for a worker that does not
    listen for wake-ups)."""
    worker, queue_list, task_list = _identity(worker_id, queues, tasks)
    async with conn.lock:
        pgconn = _usable(conn)
        named = conn.prepare_threshold is not None
        encoding = _prepared.get(conn)
        checked = encoding is not None
        if encoding is None:
            encoding = await _prepare(conn, pgconn) if named else conn.info.encoding
        values = {
            "result": None if result is None else json.dumps(result).encode(encoding),
            "message": None if message is None else message.encode(encoding),
            "job_id": None if job_id is None else str(job_id).encode(),
            "lease": None if lease is None else str(lease).encode(),
            "worker_id": worker,
            "queues": queue_list,
            "tasks": task_list,
            "was_idle": None if was_idle is None else b"t" if was_idle else b"f",
        }
        parameters = [values[name] for name in _STATEMENT.names]
        if named:
            answer = await _round_trip(
                conn, pgconn, lambda: pgconn.send_query_prepared(STATEMENT_NAME, parameters, None, _BINARY)
            )
        else:
            answer = await _round_trip(conn, pgconn, lambda: _send_unnamed(pgconn, parameters))
            if not checked:
                _check_columns(answer)
                _prepared[conn] = encoding
    return parse_answer(answer)


def _send_unnamed(pgconn: pq.abc.PGconn, parameters: list[bytes | None]) -> None:
    statement = _STATEMENT
    pgconn.send_query_params(statement.text, parameters, statement.types, None, _BINARY)


def _identity(
    worker_id: uuid.UUID, queues: Sequence[str], tasks: Sequence[str] | None
) -> tuple[bytes, bytes, bytes | None]:
    key = (worker_id, tuple(queues), None if tasks is None else tuple(tasks))
    encoded = _identities.get(key)
    if encoded is None:
        task_list = None if key[2] is None else text_array(key[2]).encode()
        # Sorted: claims that serve the same capped queues take their turns (queue_has_room's
        # locks) in the same order, so two of them never wait for each other.
        queue_list = text_array(sorted(key[1])).encode()
        encoded = _identities[key] = (str(worker_id).encode(), queue_list, task_list)
    return encoded


def _usable(conn: Connection) -> pq.abc.PGconn:
    pgconn = conn.pgconn
    if conn.closed or pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        raise psycopg.ProgrammingError(f"{QUERY} needs an idle autocommit connection")
    return pgconn


async def _prepare(conn: Connection, pgconn: pq.abc.PGconn) -> str:
    """Prepare the statement and check that its answer has the columns we parse; returns the
    connection's client encoding."""
    statement = _STATEMENT
    await _round_trip(
        conn, pgconn, lambda: pgconn.send_prepare(STATEMENT_NAME, statement.text, statement.types)
    )
    _check_columns(await _round_trip(conn, pgconn, lambda: pgconn.send_describe_prepared(STATEMENT_NAME)))
    encoding = _prepared[conn] = conn.info.encoding
    return encoding


def _check_columns(result: pq.abc.PGresult) -> None:
    """Refuse an answer (or a statement's description) without the columns `parse_answer` reads."""
    found = tuple(
        ((result.fname(index) or b"").decode(), result.ftype(index)) for index in range(result.nfields)
    )
    if found != COLUMNS:
        raise psycopg.ProgrammingError(f"{QUERY} answers {found}, the hot path parses {COLUMNS}")


async def _round_trip(conn: Connection, pgconn: pq.abc.PGconn, send: Callable[[], None]) -> pq.abc.PGresult:
    """Send one request, wait for all of its results, return the last; errors raised as psycopg's.

    Cancelled halfway (results unread), the connection cannot be handed back to psycopg in a
    known state: it is closed, and the next user reconnects.
    """
    reader = _kept_readers.get(conn)
    try:
        send()
        await _flush(pgconn)
        results = await _results(pgconn, reader)
    except BaseException as error:
        if reader is not None:
            reader.stop()  # before libpq may close the socket, while the fd is still this one's
        if not isinstance(error, psycopg.Error) or pgconn.status == pq.ConnStatus.OK:
            pgconn.finish()
        raise
    last = results[-1]
    if last.status == pq.ExecStatus.FATAL_ERROR:
        raise _error(conn, pgconn, last)
    return last


async def _flush(pgconn: pq.abc.PGconn) -> None:
    while pgconn.flush():  # only when the socket's buffer is full: a short statement fits
        await _ready(pgconn, writable=True)


async def _results(pgconn: pq.abc.PGconn, reader: _KeptReader | None) -> list[pq.abc.PGresult]:
    results: list[pq.abc.PGresult] = []
    while True:
        pgconn.consume_input()
        while pgconn.is_busy():
            if reader is None:
                await _ready(pgconn, writable=False)
            else:
                await reader.readable()
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            if not results:
                raise psycopg.OperationalError("the server sent no answer")
            return results
        results.append(result)


async def _ready(pgconn: pq.abc.PGconn, *, writable: bool) -> None:
    """Until the connection's socket can be read (or written): one wake-up, no polling."""
    loop = asyncio.get_running_loop()
    fileno = pgconn.socket
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fileno, wake)
    else:
        loop.add_reader(fileno, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fileno)
        else:
            loop.remove_reader(fileno)


class _KeptReader:
    """A reader left registered on a connection's socket between round trips.

    Registering and removing a reader per round trip is two epoll_ctl calls and the selector's
    bookkeeping, about a tenth of a job's CPU. Kept, the next round trip's `add_reader` finds
    it in place and costs no system call; if psycopg used the connection in between, its own
    wait replaced and removed ours, and `add_reader` registers it again. The owner of the
    connection must call `release` before closing it (a closed fd left registered would
    confuse the event loop when its number is reused).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fileno: int) -> None:
        self.loop = loop
        self.fileno = fileno
        self.registered = False
        self._waiter: asyncio.Future[None] | None = None
        #: Wake-ups in a row that found nobody waiting.
        self._unwaited = 0

    async def readable(self) -> None:
        self.loop.add_reader(self.fileno, self._wake)
        self.registered = True
        self._unwaited = 0
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        # The selector is level-triggered: the answer that resolved the waiter is still unread
        # at the loop's next poll, so one wake-up finds nobody waiting after every round trip.
        # A second one in a row is input nobody waits for (a notice, the server going away):
        # stop watching rather than be called on every turn of the loop; the next round trip
        # watches again.
        self._unwaited += 1
        if self._unwaited > 1:
            self.stop()

    def stop(self) -> None:
        if self.registered:
            self.registered = False
            self.loop.remove_reader(self.fileno)


#: Connections whose owner keeps a reader registered between round trips (see `keep_reader`).
_kept_readers: weakref.WeakKeyDictionary[Connection, _KeptReader] = weakref.WeakKeyDictionary()


def keep_reader(conn: Connection) -> None:
    """Keep the socket's reader registered between round trips on `conn` (a connection used for
    many of them, like a worker slot's); the caller must `release(conn)` before closing it."""
    if conn not in _kept_readers:
        _kept_readers[conn] = _KeptReader(asyncio.get_running_loop(), conn.pgconn.socket)


def release(conn: Connection) -> None:
    """Unregister the kept reader of `conn`, if any: call before closing the connection."""
    reader = _kept_readers.pop(conn, None)
    # With the connection still up its fd is still its own; once libpq has closed the socket
    # (a lost connection), whoever was waiting then removed the reader already.
    if reader is not None and conn.pgconn.status == pq.ConnStatus.OK:
        reader.stop()


def _error(conn: Connection, pgconn: pq.abc.PGconn, result: pq.abc.PGresult) -> psycopg.Error:
    encoding = conn.info.encoding
    if pgconn.status != pq.ConnStatus.OK:
        return psycopg.OperationalError(result.get_error_message(encoding) or "the connection is lost")
    state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    try:
        kind = errors.lookup(state)
    except KeyError:
        kind = psycopg.DatabaseError
    return kind(result.get_error_message(encoding), info=result, encoding=encoding)


async def receive_notifications(conn: Connection, deliver: Callable[[str, str], None]) -> None:
    """Call `deliver(channel, payload)` for every notification, from the socket's reader callback
    itself; returns only by raising (OperationalError when the connection is lost).

    psycopg's `notifies()` costs a generator, a waiting task and a reader registration per
    notification, and every worker process receives every broadcast; here the reader stays
    registered and nothing but the delivery runs between the socket and the woken slot. The
    connection must serve nothing else meanwhile (we hold its lock): LISTEN first.
    """
    loop = asyncio.get_running_loop()
    async with conn.lock:
        pgconn = _usable(conn)
        encoding = conn.info.encoding
        fileno = pgconn.socket
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                pgconn.consume_input()
                while (notification := pgconn.notifies()) is not None:
                    deliver(notification.relname.decode(encoding), notification.extra.decode(encoding))
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the connection is lost")
            except Exception as error:  # whatever it is, the awaiting caller raises it
                if not ended.done():
                    ended.set_exception(error)
                loop.remove_reader(fileno)

        loop.add_reader(fileno, readable)
        try:
            readable()  # what arrived before the reader was registered
            await ended
        finally:
            loop.remove_reader(fileno)
