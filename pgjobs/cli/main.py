"""The `pgjobs` command: migrate the database, run a worker or the operator, and administer jobs.

Queue-level commands (`enqueue`, `jobs`, `stop`, …) work on PostgreSQL directly, for producers
and operators without Kubernetes; with Kubernetes, use PgJob objects and `kubectl pgjobs`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import psycopg

from pgjobs import build
from pgjobs.cli import console, logs, options, queue, services
from pgjobs.cli.options import UserError
from pgjobs.store import connecting
from pgjobs.store.records import InvalidJob

EPILOG = """\
Database settings: --database-url / PGJOBS_DATABASE_URL (a libpq URL or key=value string),
else the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, …). DB_PASSWORD fills in a
password the URL lacks. The database defaults to 'pgjobs'; `pgjobs migrate` creates it.
Behind PgBouncer in transaction mode: --no-prepared-statements (PgBouncer before 1.21), and
--session-database-url for LISTEN (or the worker's --no-listen).

Examples:
  pgjobs migrate
  pgjobs worker --queue default --concurrency 2
  pgjobs enqueue sleep --args '{"seconds": 5}' --priority High
  pgjobs jobs --state Running,Pending
  pgjobs console --port 8090
  pgjobs logs 42 -f
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (UserError, InvalidJob, ValueError) as error:
        print(f"pgjobs: error: {error}", file=sys.stderr)
        return 2
    except connecting.DatabaseError as error:
        print(f"pgjobs: error: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        # A database error that reaches here is permanent for this command (outages are retried
        # where retrying helps): one line; the traceback only with --log-level debug.
        logging.getLogger(__name__).debug("database error", exc_info=True)
        print(f"pgjobs: error: {connecting.advice_for(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgjobs",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pgjobs {build.VERSION}")
    options.add(parser, "--database-url", default="", metavar="URL", help="PostgreSQL connection URL")
    options.add(parser, "--session-database-url", default="", metavar="URL", help=options.SESSION_URL_HELP)
    options.add_flag(parser, "--no-prepared-statements", help=options.NO_PREPARED_STATEMENTS_HELP)
    options.add(parser, "--log-level", default="info", choices=options.LOG_LEVELS, help="log level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    services.add(commands)
    queue.add(commands)
    console.add(commands)
    logs.add(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
