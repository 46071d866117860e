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
