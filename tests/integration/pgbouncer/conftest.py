"""The integration scenarios again, through a real PgBouncer (tests/integration/pooler.py).

`database` and `database_env` are the suite's own, pointed at PgBouncer instead of the server,
once per way pgjobs is set up behind it:

- `transaction`: transaction pooling as PgBouncer before 1.21 does it (Debian's 1.18): no named
  prepared statements, and LISTEN on a direct connection (`--session-database-url`);
- `transaction-poll`: the same without LISTEN at all (`--no-listen`): polling finds the work;
- `session`: session pooling, pgjobs's defaults unchanged.

The schema is migrated straight on the server first (`pgjobs migrate` takes a session lock).
"""

from __future__ import annotations

import pytest

from pgjobs.store import connecting
from tests.integration import pooler

SETUPS = ("transaction", "transaction-poll", "session")


@pytest.fixture(scope="session", params=SETUPS)
def setup(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bouncer(setup: str, request: pytest.FixtureRequest) -> pooler.PgBouncer:
    name = "session_pool" if setup == "session" else "transaction_pool"
    found: pooler.PgBouncer = request.getfixturevalue(name)
    return found


@pytest.fixture
def database(
    database: connecting.DatabaseSettings, bouncer: pooler.PgBouncer, setup: str
) -> connecting.DatabaseSettings:
    """The migrated test database, reached through PgBouncer as `setup` says."""
    direct = database
    through = connecting.DatabaseSettings(
        url=bouncer.url_without_password(direct.database_name()), password=direct.password
    )
    if setup == "session":
        return through
    return connecting.DatabaseSettings(
        url=through.url, password=through.password, prepared_statements=False, session_url=direct.url
    )


@pytest.fixture
def database_env(
    database_env: dict[str, str], database: connecting.DatabaseSettings, setup: str
) -> dict[str, str]:
    env = database_env | {"PGJOBS_DATABASE_URL": database.url}
    if not database.prepared_statements:
        env["PGJOBS_NO_PREPARED_STATEMENTS"] = "1"
    if database.session_url:
        env["PGJOBS_SESSION_DATABASE_URL"] = database.session_url
    if setup == "transaction-poll":
        env["PGJOBS_NO_LISTEN"] = "1"
    return env
