"""Every migration declares whether code written before it keeps working (the upgrade window)."""

from __future__ import annotations

import pytest

from pgjobs.store import migrating


def test_every_shipped_migration_declares_its_compatibility() -> None:
    migrations = migrating.known_migrations()
    assert migrations, "no migrations found"
    for migration in migrations:
        first_lines = migration.sql_text.splitlines()[:3]
        assert any(line.startswith("-- compatibility: ") for line in first_lines), migration.label
    # Nothing runs against a schema without the tables of the first one.
    assert migrations[0].breaking


@pytest.mark.parametrize(("kind", "breaking"), [("additive", False), ("breaking", True)])
def test_the_declaration_is_read_from_the_leading_comments(kind: str, breaking: bool) -> None:
    text = f"-- What this migration does.\n--\n-- compatibility: {kind}\nCREATE TABLE pgjobs.t ();\n"
    assert migrating.declared_breaking("0009_t.sql", text) is breaking


@pytest.mark.parametrize(
    "text",
    [
        "CREATE TABLE pgjobs.t ();\n",
        # Only the leading comment block counts: a declaration after SQL is no header.
        "-- What this does.\nCREATE TABLE pgjobs.t ();\n-- compatibility: additive\n",
        "-- compatibility: harmless\nCREATE TABLE pgjobs.t ();\n",
    ],
)
def test_a_migration_without_a_declaration_is_refused_by_name(text: str) -> None:
    with pytest.raises(RuntimeError, match=r"0009_t\.sql must declare.*compatibility: additive"):
        migrating.declared_breaking("0009_t.sql", text)


def test_a_migration_outside_a_transaction_is_split_into_its_statements() -> None:
    text = (
        "-- compatibility: additive\n-- transaction: none\n-- Why.\n"
        "DROP INDEX CONCURRENTLY IF EXISTS pgjobs.i;\n"
        "-- The index; a ; inside a line stays.\n"
        "CREATE INDEX CONCURRENTLY i ON pgjobs.jobs (id)\n    WHERE message <> ';';\n"
    )
    assert migrating.declared_outside_transaction(text)
    migration = migrating.Migration(9, "t", text, breaking=False, outside_transaction=True)
    assert migration.statements() == [
        "DROP INDEX CONCURRENTLY IF EXISTS pgjobs.i",
        "CREATE INDEX CONCURRENTLY i ON pgjobs.jobs (id)\n    WHERE message <> ';'",
    ]


def test_a_migration_outside_a_transaction_cannot_hold_a_function_body() -> None:
    text = "-- compatibility: additive\n-- transaction: none\nCREATE FUNCTION f() AS $$ SELECT 1; $$;\n"
    migration = migrating.Migration(9, "t", text, breaking=False, outside_transaction=True)
    with pytest.raises(RuntimeError, match="function bodies"):
        migration.statements()


def test_migrations_run_in_a_transaction_unless_they_say_otherwise() -> None:
    assert not migrating.declared_outside_transaction("-- compatibility: additive\nCREATE TABLE t ();\n")
    assert [m.label for m in migrating.known_migrations() if m.outside_transaction] == [
        "0009_claim_per_queue"
    ]
