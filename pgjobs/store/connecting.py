"""Database settings and connections: where the URL and password come from, and clear errors.

Settings come from `--database-url` / `PGJOBS_DATABASE_URL`, else from the libpq environment
(`PGHOST`, `PGUSER`, `PGDATABASE`, …). `DB_PASSWORD` fills in a password the URL lacks, as the
system pgjobs replaces did. No password is ever built in.

Behind PgBouncer: in session mode nothing changes. In transaction mode every transaction may
run on another server connection, so two things that live in a server session need settings:
named prepared statements (`--no-prepared-statements` / `PGJOBS_NO_PREPARED_STATEMENTS`, for
PgBouncer before 1.21, which does not carry them from one server connection to the next) and
LISTEN (`--session-database-url` / `PGJOBS_SESSION_DATABASE_URL`: a connection that keeps its
server session, straight to PostgreSQL or through a session-mode pool; or poll only with the
worker's `--no-listen`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import conninfo as libpq_conninfo
from psycopg.rows import dict_row

DEFAULT_DATABASE = "pgjobs"
#: Seconds a connection may take to set up before it counts as failed.
CONNECT_TIMEOUT = 10
#: TCP settings unless the URL sets its own: a connection whose packets vanish (a dead node, a
#: dropped NAT entry) fails within about half a minute instead of the kernel's 15 minutes (data
#: unacknowledged) or 2 hours (idle, like a worker's LISTEN connection).
TCP_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "20",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


class DatabaseError(Exception):
    """A database problem explained for a person: what failed and which setting to fix.

    `retryable` says whether waiting can help (a server still starting, a schema not yet
    migrated) or only a change of settings or code can (a wrong password, a newer schema).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclasses.dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    password: str | None = None
    #: Whether connections name prepared statements (the worker's hot statement, and psycopg's
    #: own for statements run often). Off for PgBouncer before 1.21 in transaction mode.
    prepared_statements: bool = True
    #: Where connections that need their own server session go (LISTEN); "" means `url`.
    session_url: str = ""

    @classmethod
    def from_environment(
        cls,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        *,
        session_url: str | None = None,
        prepared_statements: bool = True,
    ) -> DatabaseSettings:
        env = os.environ if env is None else env
        return cls(
            url=url or env.get("PGJOBS_DATABASE_URL", ""),
            password=env.get("DB_PASSWORD") or None,
            prepared_statements=prepared_statements,
            session_url=session_url or env.get("PGJOBS_SESSION_DATABASE_URL", ""),
        )

    def for_session(self) -> DatabaseSettings:
        """Settings for a connection that keeps one server session for its whole life (LISTEN)."""
        if not self.session_url:
            return self
        return dataclasses.replace(self, url=self.session_url, session_url="")

    def conninfo(self, dbname: str | None = None) -> str:
        """The libpq connection string, with DB_PASSWORD filled in where the URL has none."""
        params = self._parsed_url()
        extra = {key: value for key, value in TCP_DEFAULTS.items() if key not in params}
        if self.password and "password" not in params:
            extra["password"] = self.password
        if dbname is not None:
            extra["dbname"] = dbname
        elif "dbname" not in params and "PGDATABASE" not in os.environ:
            extra["dbname"] = DEFAULT_DATABASE
        return libpq_conninfo.make_conninfo(self.url, **extra)

    def _parsed_url(self) -> dict[str, Any]:
        """The URL's parameters; a malformed URL is a DatabaseError whose text leaves the URL
        out (psycopg quotes it whole, password included, and the text reaches logs and terminals)."""
        try:
            return libpq_conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as error:
            reason = str(error).strip().replace(self.url, "...") if self.url else str(error).strip()
            # Quoted fragments of a keyword=value string may be a password too.
            reason = re.sub(r'"[^"\s]{2,}"', '"..."', reason)
            raise DatabaseError(
                f"PGJOBS_DATABASE_URL / --database-url is not a valid PostgreSQL URL: {reason}",
                retryable=False,
            ) from None

    def database_name(self) -> str:
        params = libpq_conninfo.conninfo_to_dict(self.conninfo())
        return str(params.get("dbname") or DEFAULT_DATABASE)

    def describe(self) -> str:
        """Where we connect, without the password: for error messages and logs."""
        params = libpq_conninfo.conninfo_to_dict(self.conninfo())
        hosts = str(params.get("host") or os.environ.get("PGHOST") or "localhost").split(",")
        ports = str(params.get("port") or os.environ.get("PGPORT") or "5432").split(",")
        if len(ports) == 1:  # a multi-host URL may give one port for every host
            ports *= len(hosts)
        servers = ",".join(f"{host}:{port or 5432}" for host, port in zip(hosts, ports, strict=False))
        user = params.get("user") or os.environ.get("PGUSER") or "(current user)"
        return f"database {self.database_name()!r} on {servers} as {user}"


async def connect(
    settings: DatabaseSettings, *, dbname: str | None = None, autocommit: bool = True
) -> psycopg.AsyncConnection[dict[str, object]]:
    """Open an autocommit connection returning rows as dicts; errors become DatabaseError."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            settings.conninfo(dbname),
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="pgjobs",
        )
    except psycopg.OperationalError as error:
        raise DatabaseError(explain(error, settings), retryable=not _is_login_failure(error)) from error
    if not settings.prepared_statements:
        conn.prepare_threshold = None  # the hot path (hotpath.py) follows the connection's setting
    return conn


#: SQLSTATEs of a server that cannot take this session's statements now, where waiting and a new
#: connection get past it: read_only_sql_transaction (a demoted primary, a replica during a
#: switchover), admin_shutdown, crash_shutdown, cannot_connect_now (a server starting or in
#: recovery), serialization_failure and deadlock_detected (the statement was rolled back).
RECONNECT_STATES = frozenset({"25006", "57P01", "57P02", "57P03", "40001", "40P01"})
#: serialization_failure and deadlock_detected: the statement lost a conflict with another
#: transaction and was rolled back; running it again at once usually gets through.
CONFLICT_STATES = frozenset({"40001", "40P01"})
#: Whole classes of the same kind: 08 connection exceptions, 53 insufficient resources (too
#: many connections, out of memory or disk on the server).
RECONNECT_CLASSES = frozenset({"08", "53"})
#: A pooler in transaction mode mixing named statements: duplicate_prepared_statement,
#: invalid_sql_statement_name. Nothing ran; a connection without named statements gets past it.
POOLED_STATEMENT_STATES = frozenset({"42P05", "26000"})


def is_outage(error: BaseException) -> bool:
    """Whether `error` is the database being away or in a switchover, not a refusal of what we sent:
    waiting and a new connection get past it, so it is retried, never reported as a bad job.
    Everything else (syntax, permissions, a missing schema) is permanent: said once, not retried."""
    if isinstance(error, psycopg.OperationalError | DatabaseError):
        return True
    if not isinstance(error, psycopg.Error) or not error.sqlstate:
        return False
    return is_outage_state(error.sqlstate)


def summary(error: BaseException) -> str:
    """One line for a log: the first line of the error's text, and its SQLSTATE when the server
    sent one (libpq's text goes on with hints and context lines)."""
    text = str(error).strip()
    first = text.splitlines()[0].strip() if text else type(error).__name__
    state = getattr(error, "sqlstate", None)
    return f"{first} (SQLSTATE {state})" if state else first


def is_outage_state(sqlstate: str) -> bool:
    """Whether a SQLSTATE is one `is_outage` retries."""
    return sqlstate in RECONNECT_STATES | POOLED_STATEMENT_STATES or sqlstate[:2] in RECONNECT_CLASSES


def _is_login_failure(error: psycopg.Error) -> bool:
    lowered = str(error).lower()
    return "password authentication failed" in lowered or "no password supplied" in lowered


def explain(error: psycopg.Error, settings: DatabaseSettings) -> str:
    """One line that says what went wrong and what to change."""
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    where = settings.describe()
    lowered = str(error).lower()
    if _is_login_failure(error):
        return (
            f"cannot log in to {where}: {text}. Set DB_PASSWORD (or put the password in "
            "PGJOBS_DATABASE_URL / --database-url)"
        )
    if f'database "{settings.database_name()}" does not exist' in lowered:
        return f"{where} does not exist: run `pgjobs migrate` to create it"
    if (
        "connection refused" in lowered
        or "could not translate host name" in lowered
        or "timeout expired" in lowered
        or "no such file or directory" in lowered
    ):
        return (
            f"cannot reach PostgreSQL for {where}: {text}. Check PGJOBS_DATABASE_URL / "
            "--database-url (or PGHOST and PGPORT) and that the server is running"
        )
    return f"{where}: {text}"


#: Server errors that are settings, not bugs: what each means for the person who runs pgjobs.
_SERVER_ERROR_ADVICE = {
    "25006": "the server is read-only (a standby, or a primary that was demoted): point "
    "PGJOBS_DATABASE_URL / --database-url at the primary",
    "42501": "the login lacks a privilege pgjobs needs: run `pgjobs migrate` as the schema's owner, "
    "or grant the login its pgjobs role (docs/operations.md, database roles)",
    "28000": "the server refused the login: check the user in PGJOBS_DATABASE_URL / --database-url "
    "and the server's pg_hba.conf",
}


def advice_for(error: Exception) -> str:
    """One line for a server error: what it was (SQLSTATE and the server's words) and, where a
    setting causes it (a read-only server, a missing privilege), what to change."""
    sqlstate = getattr(error, "sqlstate", None) or ""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    advice = _SERVER_ERROR_ADVICE.get(sqlstate)
    where = f"PostgreSQL error {sqlstate}: " if sqlstate else "PostgreSQL error: "
    return f"{where}{text}" + (f": {advice}" if advice else "")
