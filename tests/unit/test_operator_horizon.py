"""The operator's oldest-snapshot gauge says once, per role, when its view is partial."""

from __future__ import annotations

import logging

import pytest

from pgjobs.operator import maintenance
from pgjobs.store.horizon import OldestSnapshot


def test_a_partial_view_is_reported_once_with_the_grant_that_fixes_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "_partial_view_reported", set())
    with caplog.at_level(logging.WARNING, logger=maintenance.logger.name):
        maintenance._say_once_if_partial(OldestSnapshot(3.0, "pgjobs", sees_all_sessions=True))
        assert not caplog.records
        for _ in range(3):
            maintenance._say_once_if_partial(OldestSnapshot(3.0, "app", sees_all_sessions=False))
    assert [record.getMessage() for record in caplog.records] == [
        "pgjobs_oldest_snapshot_age_seconds counts only the transactions of role 'app', which may not "
        "read other sessions' activity: GRANT pg_monitor TO app; to watch every session"
    ]
