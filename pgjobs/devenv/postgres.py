"""A throwaway PostgreSQL server: initdb into a temporary directory, start on a free port.

Used by the integration tests, the benchmarks and `make demo`. PostgreSQL refuses to run as
root, so when we are root (as in CI) the server runs as an unprivileged user (`postgres`, else
`nobody`). Password authentication is on for TCP, so wrong passwords fail as they would in
production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import conninfo, sql

SUPERUSER = "pgjobs"


class PostgresNotFound(RuntimeError):
    pass


def find_bindir() -> Path:
    """The directory with initdb and postgres: $PGJOBS_PG_BINDIR, pg_config, or Debian's layout."""
    candidates = [os.environ.get("PGJOBS_PG_BINDIR", "")]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
    candidates += sorted((str(path) for path in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, postgres) not found: install Debian's postgresql-15 "
        "package (`apt-get install postgresql-15`) or set PGJOBS_PG_BINDIR"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run the server as, None when we are not root and can run it ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    """One server; use as a context manager. `url` has the superuser's password in it."""

    def __init__(self, *, durable: bool = False, max_connections: int = 300) -> None:
        self.bindir = find_bindir()
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.durable = durable
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="pgjobs-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._user = _unprivileged_user()

    def url(self, dbname: str = "postgres", *, password: str | None = None) -> str:
        return conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            password=self.password if password is None else password,
        )

    def url_without_password(self, dbname: str = "postgres") -> str:
        return conninfo.make_conninfo(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=dbname)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        if not self.datadir.exists():
            self._create_data()
        self._launch()
        self.wait_ready()

    def own_root(self) -> None:
        """Hand the temporary directory to the account the server runs as."""
        if self._user:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)

    def run_program(self, program: str, *args: str) -> None:
        """Run one of PostgreSQL's programs (initdb, pg_basebackup) to its end as the server's
        account, its output in the server's log; a failure raises with the log's tail."""
        if self._run_as_owner([str(self.bindir / program), *args]).wait() != 0:
            raise RuntimeError(f"{program} failed, see {self.logfile}:\n{self.log_tail()}")

    def _run_as_owner(self, args: list[str]) -> subprocess.Popen[bytes]:
        user = self._user
        with self.logfile.open("ab") as log:
            return subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )

    def _create_data(self) -> None:
        """A new cluster: initdb, the superuser's password set, password logins over TCP."""
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.own_root()
        if self._user:
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        self.run_program(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()

    def _launch(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": str(self.max_connections),
            "shared_buffers": "256MB",
            "log_min_messages": "warning",
        }
        if not self.durable:
            # Test data is thrown away: durability only costs time here.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        args = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        self._process = self._run_as_owner(args)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs (backends are its children)."""
        return self._process.pid if self._process and self._process.poll() is None else None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process and self._process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready after {timeout}s:\n{self.log_tail()}") from None
                time.sleep(0.05)

    def stop(self, *, fast: bool = True) -> None:
        """Shut the server down (fast: roll back sessions and exit, like a crash for clients)."""
        self._shut_down(signal.SIGINT if fast else signal.SIGTERM)

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT): every process exits at once, no checkpoint, sessions cut
        off mid-transaction, as when the machine under a primary fails."""
        self._shut_down(signal.SIGQUIT)

    def _shut_down(self, signum: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL (with the password)."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        if not self.logfile.exists():
            return ""
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
