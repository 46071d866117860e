"""A real PgBouncer in front of the test server: Debian's `/usr/sbin/pgbouncer`, one per pool mode.

It listens on a free port, forwards every database name to the test server and logs in there
with the superuser's password (from its userlist, SCRAM both ways). PgBouncer refuses to run
as root, so when we are root it runs as the same unprivileged user as the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import conninfo

from pgjobs.devenv import postgres

BINARY = Path("/usr/sbin/pgbouncer")


class PgBouncerNotFound(RuntimeError):
    pass


class PgBouncer:
    """One PgBouncer in `pool_mode` (transaction or session); use as a context manager."""

    def __init__(self, server: postgres.PostgresServer, pool_mode: str) -> None:
        if not BINARY.exists():
            raise PgBouncerNotFound(f"{BINARY} not found: install Debian's pgbouncer package")
        self.server = server
        self.pool_mode = pool_mode
        self.port = postgres.free_port()
        self.root = Path(tempfile.mkdtemp(prefix=f"pgjobs-pgbouncer-{pool_mode}-"))
        self.logfile = self.root / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._user = postgres._unprivileged_user()  # the server's own account, as root

    def url_without_password(self, dbname: str) -> str:
        return conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, user=postgres.SUPERUSER, dbname=dbname
        )

    def __enter__(self) -> PgBouncer:
        self._configure()
        with self.logfile.open("ab") as log:
            self._process = subprocess.Popen(
                [str(BINARY), str(self.root / "pgbouncer.ini")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self._user.pw_uid if self._user else None,
                group=self._user.pw_gid if self._user else None,
                extra_groups=[] if self._user else None,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def _configure(self) -> None:
        server = self.server
        (self.root / "userlist.txt").write_text(f'"{postgres.SUPERUSER}" "{server.password}"\n')
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "scram-sha-256",
            "auth_file": str(self.root / "userlist.txt"),
            "pool_mode": self.pool_mode,
            # Worker processes hold a connection per slot, plus their heartbeat and listener.
            "max_client_conn": "1000",
            "default_pool_size": "40",
            "max_db_connections": "0",
            "pidfile": str(self.root / "pgbouncer.pid"),
            "admin_users": postgres.SUPERUSER,
            "server_reset_query_always": "0",
            # Every test has a database of its own, so a pool per test: idle server connections
            # of finished tests close soon instead of adding up to the server's max_connections.
            "server_idle_timeout": "5",
        }
        lines = ["[databases]", f"* = host=127.0.0.1 port={server.port}", "", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        (self.root / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        if self._user:
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                psycopg.connect(
                    self.url_without_password("postgres"), password=self.server.password, connect_timeout=2
                ).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer not ready after {timeout}s:\n{self.log_tail()}") from None
                time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        if not self.logfile.exists():
            return ""
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
