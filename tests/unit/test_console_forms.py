"""The console's pure parts: the jobs filter and cursor from a query string, the CSRF checks."""

from __future__ import annotations

import datetime

import pytest

from pgjobs.console import csrf, filters, formatting
from pgjobs.states import JobState

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_an_empty_query_is_the_newest_page_of_all_jobs() -> None:
    job_filter, cursor = filters.parse({})
    assert job_filter == filters.JobFilter() and cursor == filters.Cursor()
    assert set(job_filter.parameters(NOW).values()) == {None}
    assert filters.link(job_filter) == "/jobs"


def test_every_filter_becomes_a_bound_parameter() -> None:
    query = {
        "namespace": " team-a ",
        "queue": "q",
        "task": "resize",
        "phase": "failed",
        "q": "x",
        "within": "1h",
    }
    job_filter, _ = filters.parse(query)
    assert job_filter.phase is JobState.FAILED
    assert job_filter.parameters(NOW) == {
        "namespace": "team-a",
        "queue": "q",
        "task": "resize",
        "state": "failed",
        "args_like": "%x%",
        "since": NOW - datetime.timedelta(hours=1),
    }


def test_like_wildcards_and_markup_in_the_args_text_are_searched_literally() -> None:
    job_filter, _ = filters.parse({"q": "'%<script>_\\"})
    assert job_filter.parameters(NOW)["args_like"] == "%'\\%<script>\\_\\\\%"


@pytest.mark.parametrize(
    "query",
    [
        {"phase": "Done"},
        {"within": "2y"},
        {"before": "-1"},
        {"before": "abc"},
        {"before": "١٢"},  # Arabic-Indic digits: str.isdigit says yes, int() would take them
        {"before": str(2**63)},
        {"namespace": "n" * (filters.MAX_VALUE + 1)},
        {"q": "a\x00b"},
    ],
)
def test_what_cannot_be_a_filter_is_refused_with_a_reason(query: dict[str, str]) -> None:
    with pytest.raises(filters.BadFilter):
        filters.parse(query)


def test_links_keep_the_filter_and_carry_the_cursor() -> None:
    job_filter, cursor = filters.parse({"queue": "a b&c", "phase": "running", "before": "120"})
    assert cursor == filters.Cursor(before=120)
    assert filters.link(job_filter, cursor) == "/jobs?queue=a+b%26c&phase=Running&before=120"


@pytest.mark.parametrize(
    ("text", "expected"), [("42", 42), ("0", None), ("x", None), ("4e2", None), ("", None)]
)
def test_a_job_id_in_a_path_is_a_positive_integer(text: str, expected: int | None) -> None:
    assert filters.job_id(text) == expected


def test_the_csrf_token_must_be_present_in_both_and_equal() -> None:
    token = csrf.new_token()
    assert len(token) >= 40 and csrf.new_token() != token
    assert csrf.token_matches(token, token)
    assert not csrf.token_matches(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not csrf.token_matches(token, None)
    assert not csrf.token_matches(None, token)
    assert not csrf.token_matches("", "")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://127.0.0.1:8090", True),
        ("https://console.example.com", True),
        ("http://evil.example", False),
        ("http://127.0.0.1:8091", False),
        ("null", False),
        ("file://", False),
    ],
)
def test_a_post_from_another_origin_is_refused(origin: str | None, allowed: bool) -> None:
    assert csrf.origin_allowed(origin, {"127.0.0.1:8090", "console.example.com", ""}) is allowed


def test_durations_read_at_a_glance() -> None:
    assert [formatting.duration(s) for s in (0, 42, 303, 7800, 277200)] == [
        "0s",
        "42s",
        "5m 3s",
        "2h 10m",
        "3d 5h",
    ]
    assert formatting.ago(NOW - datetime.timedelta(seconds=90), NOW) == "1m 30s ago"
    assert formatting.ago(NOW + datetime.timedelta(seconds=20), NOW) == "in 20s"
    assert formatting.ago(None, NOW) == "—"


def test_priorities_are_named_as_in_pgjobs() -> None:
    assert [formatting.priority(p) for p in (2, 1, 0)] == ["High", "Regular", "Low"]
