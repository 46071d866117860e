"""Store pieces that need no server: named queries, settings, records, validation, migrations list."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgjobs.store import connecting, migrating, queries, records, validation
from pgjobs.store.records import MAX_ARGS_BYTES, ClaimedJob, InvalidJob, NewJob


def test_named_queries_parse_and_reject_duplicates() -> None:
    parsed = queries.parse("-- name: a_b\nSELECT 1;\n-- name: c\nSELECT 2;\n")
    assert parsed == {"a_b": "SELECT 1", "c": "SELECT 2"}
    with pytest.raises(ValueError, match="defined twice"):
        queries.parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_every_named_query_is_used_and_every_used_query_exists() -> None:
    source = "".join(path.read_text() for path in Path(queries.__file__).parent.glob("*.py"))
    runs = r'(?:fetch_(?:all|one)\(\s*conn,\s*|(?:QUERIES|STATEMENTS)\[\s*)"([a-z_]+)"'
    used = set(re.findall(runs, source))
    assert used - set(queries.QUERIES) == set(), "the code names queries that do not exist"
    assert set(queries.QUERIES) - used == set(), "queries.sql has queries no code runs"


def test_migrations_are_numbered_without_gaps() -> None:
    known = migrating.known_migrations()
    assert [migration.version for migration in known] == list(range(1, len(known) + 1))
    assert migrating.latest_version() == known[-1].version


def test_db_password_fills_a_missing_password_only() -> None:
    env = {"DB_PASSWORD": "pw"}
    filled = connecting.DatabaseSettings.from_environment("postgresql://app@db/jobs", env)
    assert conninfo_to_dict(filled.conninfo())["password"] == "pw"
    own = connecting.DatabaseSettings.from_environment("postgresql://app:own@db/jobs", env)
    assert conninfo_to_dict(own.conninfo())["password"] == "own"


def test_vanishing_connections_fail_fast_unless_the_url_says_otherwise() -> None:
    default = conninfo_to_dict(connecting.DatabaseSettings(url="postgresql://app@db/jobs").conninfo())
    assert (default["keepalives_idle"], default["tcp_user_timeout"]) == ("20", "30000")
    url = "postgresql://app@db/jobs?tcp_user_timeout=0&keepalives=0"
    own = conninfo_to_dict(connecting.DatabaseSettings(url=url).conninfo())
    assert (own["tcp_user_timeout"], own["keepalives"]) == ("0", "0")


def test_default_database_name_is_pgjobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGDATABASE", raising=False)
    assert connecting.DatabaseSettings(url="host=db").database_name() == "pgjobs"


def test_describe_names_each_server_of_a_multi_host_url() -> None:
    settings = connecting.DatabaseSettings(
        url="postgresql://u@db-a:5433,db-b/jobs?target_session_attrs=read-write"
    )
    assert settings.describe() == "database 'jobs' on db-a:5433,db-b:5432 as u"
    one_port = connecting.DatabaseSettings(url="host=db-a,db-b port=6432 dbname=jobs user=u")
    assert one_port.describe() == "database 'jobs' on db-a:6432,db-b:6432 as u"


def test_describe_never_shows_the_password() -> None:
    settings = connecting.DatabaseSettings(url="postgresql://app:secret@db:5433/jobs", password="x")
    assert "secret" not in settings.describe() and "db:5433" in settings.describe()


@pytest.mark.parametrize(
    ("server_says", "advice"),
    [
        ('FATAL:  password authentication failed for user "app"', "Set DB_PASSWORD"),
        ("connection refused", "Check PGJOBS_DATABASE_URL"),
        ('FATAL:  database "jobs" does not exist', "run `pgjobs migrate`"),
    ],
)
def test_connection_errors_say_what_to_fix(server_says: str, advice: str) -> None:
    settings = connecting.DatabaseSettings(url="postgresql://app@db/jobs")
    assert advice in connecting.explain(psycopg.OperationalError(server_says), settings)


def test_args_size_limit_names_the_limit() -> None:
    job = NewJob("noop", args={"blob": "x" * MAX_ARGS_BYTES})
    with pytest.raises(InvalidJob, match=f"over the limit of {MAX_ARGS_BYTES} bytes"):
        job.args_json()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "has space"}, "not a valid task name"),
        ({"task": "ok", "queue": "UPPER"}, "not a valid queue name"),
        ({"task": "ok", "max_attempts": 0}, "max_attempts must be a whole number from 1 to 100"),
        ({"task": "ok", "backoff_seconds": -1}, "backoff_seconds"),
        ({"task": "ok", "timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_validation_names_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        validation.check_new_job(NewJob(**fields))  # type: ignore[arg-type]


def test_retry_delay_doubles_and_stops_at_the_last_attempt() -> None:
    now = datetime.datetime.now(datetime.UTC)

    def claimed(attempt: int) -> ClaimedJob:
        return ClaimedJob(1, "noop", {}, attempt, 3, 10, None, 1, now, now)

    assert [claimed(attempt).retry_delay() for attempt in (1, 2, 3)] == [10.0, 20.0, None]


def test_text_postgresql_refuses_is_found_anywhere_in_a_value() -> None:
    lone = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert records.json_problem({"a": [1, {"b": "fine"}], "c": None}) is None
    assert records.json_problem({"a": ["x", {"b": "a\x00b"}]}) == "it contains a NUL character (\\u0000)"
    problem = records.json_problem({lone: 1})  # keys too
    assert problem and "lone surrogate" in problem and "\\udce9" in problem
    with pytest.raises(records.InvalidJob, match="lone surrogate"):
        records.NewJob("noop", args={"name": lone}).args_json()


def test_storable_text_keeps_what_it_cannot_store_visible() -> None:
    lone = b"bad\xffbyte".decode("utf-8", "surrogateescape")
    assert records.storable_text("a\x00b") == "a\\0b"
    assert records.storable_text(lone) == "bad\\udcffbyte"
    assert records.storable_text("caf\u00e9 \u2603") == "caf\u00e9 \u2603"


def test_json_deeper_than_the_bound_is_refused_at_any_depth_without_recursion() -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = {"a": value}
        return value

    assert records.json_problem(nested(records.MAX_JSON_DEPTH)) is None
    for depth in (records.MAX_JSON_DEPTH + 1, 100_000):
        assert records.json_problem(nested(depth), "args") == (
            f"args is nested deeper than {records.MAX_JSON_DEPTH} levels"
        )
        with pytest.raises(records.InvalidJob, match="nested deeper than"):
            records.NewJob("noop", args=nested(depth)).args_json()
    loop: list[Any] = []
    loop.append(loop)
    assert "nested deeper" in (records.json_problem({"loop": loop}) or "")


def test_long_messages_are_cut() -> None:
    text = records.storable_text("x" * 1_000_000) or ""
    assert len(text) < records.MAX_MESSAGE_CHARS + 100 and text.endswith("(1000000 characters)")
