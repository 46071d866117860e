"""A streaming standby of a throwaway PostgreSQL server, for failover tests.

`Standby(primary)` copies a running `PostgresServer` with `pg_basebackup -R` (its data directory
and a `primary_conninfo` naming the standby) and starts the copy on a free port, streaming WAL
over the primary's Unix socket: initdb's `local replication all trust` line and the bootstrap
superuser's REPLICATION attribute let it in, so nothing in the primary's setup changes.
`make_synchronous` makes the primary wait for the standby at every commit, `Standby.detach` cuts
the standby off (as a network would), and `promote` turns it into a primary (`pg_promote()`,
what `pg_ctl promote` does).
"""

from __future__ import annotations

import time

import psycopg
from psycopg import conninfo, sql

from pgjobs.devenv.postgres import SUPERUSER, PostgresServer


class Standby(PostgresServer):
    """A hot standby of `primary`; use as a context manager, like the primary. It keeps the
    primary's settings and password (the backup copies the roles), and `name` is the
    `application_name` it streams under: the name `synchronous_standby_names` lists."""

    def __init__(self, primary: PostgresServer, *, name: str = "standby") -> None:
        # A hot standby refuses to start with fewer connections than its primary allows.
        super().__init__(durable=primary.durable, max_connections=primary.max_connections)
        self.primary = primary
        self.name = name
        self.password = primary.password

    def _create_data(self) -> None:
        """The primary's data directory over a replication connection, with standby.signal and
        the primary_conninfo (application_name included) that `-R` writes."""
        self.own_root()
        source = conninfo.make_conninfo(
            host=str(self.primary.root), port=self.primary.port, user=SUPERUSER, application_name=self.name
        )
        self.run_program(
            "pg_basebackup",
            "--pgdata",
            str(self.datadir),
            "--dbname",
            source,
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
        )

    def start(self) -> None:
        super().start()
        self.wait_streaming()

    def detach(self) -> None:
        """Stop streaming, as a standby cut off by the network: the primary's commits from now
        on are not here, and a promotion loses them (what asynchronous replication risks)."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while conn.execute("SELECT 1 FROM pg_stat_wal_receiver").fetchone():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"standby {self.name!r} still streams 30 s after detaching")
                time.sleep(0.05)

    def replication_state(self) -> tuple[str, str] | None:
        """(state, sync_state) of this standby in the primary's pg_stat_replication, or None."""
        with psycopg.connect(self.primary.url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s", (self.name,)
            ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def wait_streaming(self, *, synchronous: bool = False, timeout: float = 30.0) -> None:
        """Wait until the primary streams to this standby (as its synchronous standby)."""
        wanted = ("streaming", "sync" if synchronous else "async")
        deadline = time.monotonic() + timeout
        while (state := self.replication_state()) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"standby {self.name!r} is {state} after {timeout}s, not {wanted}:\n{self.log_tail()}"
                )
            time.sleep(0.05)


def make_synchronous(standby: Standby) -> None:
    """Make the primary's commits wait until `standby` has flushed them, so a promotion loses no
    commit a client saw succeed. The primary must be durable: a test server's command line
    sets `synchronous_commit=off`, which no configuration file can override."""
    if not standby.primary.durable:
        raise ValueError("synchronous replication needs a durable primary (PostgresServer(durable=True))")
    with psycopg.connect(standby.primary.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(standby.name))
        )
        conn.execute("SELECT pg_reload_conf()")
    standby.wait_streaming(synchronous=True)


def promote(standby: Standby, timeout: float = 30.0) -> None:
    """Turn the standby into a primary; returns once it accepts writes."""
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_promote(wait => true, wait_seconds => %s)", (int(timeout),))
        deadline = time.monotonic() + timeout
        while _in_recovery(conn):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"standby still in recovery {timeout}s after promotion:\n{standby.log_tail()}"
                )
            time.sleep(0.05)


def _in_recovery(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])
