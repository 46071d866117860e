"""The advisory locks of pgjobs processes must not collide."""

from __future__ import annotations

from pgjobs.store import leases, migrating


def test_leadership_and_migrations_take_different_advisory_locks() -> None:
    # Same key: a replica's `pgjobs migrate` waits for ever behind the leading replica.
    assert leases.LOCK_KEY != migrating._MIGRATION_LOCK_KEY
    assert all(0 < key < 2**63 for key in (leases.LOCK_KEY, migrating._MIGRATION_LOCK_KEY))
