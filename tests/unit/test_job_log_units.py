"""The pure parts of per-job logs: positions, redaction, the per-attempt cap, the printed line,
and the SubjectAccessReview the logs API asks for."""

from __future__ import annotations

import datetime

import pytest
from multidict import CIMultiDict

from pgjobs.cli.loglines import line_text
from pgjobs.operator import logsapi
from pgjobs.store import connecting
from pgjobs.store.job_logs import Position
from pgjobs.worker import capture


def test_a_position_is_written_and_read_as_attempt_dot_seq() -> None:
    assert str(Position(2, 17)) == "2.17"
    assert Position.parse("2.17") == Position(2, 17)
    assert Position(1, 900) < Position(2, 1)
    for bad in ("2", "2.", ".3", "a.b", "-1.2"):
        with pytest.raises(ValueError, match=r"ATTEMPT\.SEQ"):
            Position.parse(bad)


def test_the_redactor_replaces_every_secret_longest_first() -> None:
    redact = capture.Redactor(["pass", "password1", ""])
    assert redact("password1 and pass and password1") == "[redacted] and [redacted] and [redacted]"
    assert redact("nothing here") == "nothing here"


def test_the_secrets_are_the_passwords_the_worker_holds_as_written_and_url_encoded() -> None:
    database = connecting.DatabaseSettings(url="postgresql://u:url%2Fpw@h/db", password="from-env")
    secrets = capture.secrets_of(database, {"DB_PASSWORD": "p@ss", "PGPASSWORD": ""})
    assert set(secrets) == {"from-env", "p@ss", "p%40ss", "url/pw", "url%2Fpw"}
    assert capture.secrets_of(connecting.DatabaseSettings(url="not a url ="), {}) == []


def test_an_attempt_keeps_lines_up_to_its_cap_then_one_marker() -> None:
    firsts: list[None] = []
    log = capture.AttemptLog(7, 1, lambda: firsts.append(None))
    line = "x" * 1000
    for _ in range(100):
        log.add("INFO", line)
    lines = log.take()
    assert [entry.message for entry in lines[:-1]] == [line] * (capture.MAX_ATTEMPT_BYTES // 1000)
    assert (lines[-1].level, lines[-1].message) == ("WARNING", capture.TRUNCATED)
    assert len(firsts) == 1
    log.add("INFO", "after the cap")
    assert log.take() == [] and len(firsts) == 1


def test_a_closed_attempt_drops_what_comes_after_and_put_back_lines_go_first() -> None:
    firsts: list[None] = []
    log = capture.AttemptLog(7, 1, lambda: firsts.append(None))
    log.add("INFO", "one")
    taken = log.take()
    log.add("INFO", "two")
    log.put_back(taken)
    assert [entry.message for entry in log.close()] == ["one", "two"]
    log.add("INFO", "three")
    assert log.take() == [] and len(firsts) == 2


def test_a_nul_character_is_stored_escaped() -> None:
    log = capture.AttemptLog(7, 1, lambda: None)
    log.add("INFO", "a\x00b")
    assert [entry.message for entry in log.take()] == ["a\\0b"]


def test_a_printed_line_has_the_time_in_utc_the_attempt_and_the_level() -> None:
    at = datetime.datetime(
        2026, 12, 6, 8, 50, 1, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert line_text(2, at, "INFO", "step 1/10") == "2026-12-06T07:50:01.123Z [2] INFO step 1/10"


def test_the_review_asks_whether_the_forwarded_caller_may_get_the_pgjob() -> None:
    headers = CIMultiDict(
        [
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "team-a"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "read"),
        ]
    )
    spec = logsapi.review(headers, "team-a", "nightly")["spec"]
    assert spec == {
        "user": "alice",
        "groups": ["team-a", "system:authenticated"],
        "extra": {"scopes": ["read"]},
        "resourceAttributes": {
            "namespace": "team-a",
            "name": "nightly",
            "verb": "get",
            "group": "pgjobs.dev",
            "resource": "pgjobs",
        },
    }
