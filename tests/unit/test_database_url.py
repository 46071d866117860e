"""A malformed database URL is one line that leaves the URL, and so its password, out."""

from __future__ import annotations

import pytest

from pgjobs.cli import main
from pgjobs.store import connecting


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:s3cretpw@[host/db",
        "host=x password s3cretpw",
        "postgresql://u:s3cretpw@h/db?x=s3cretpw",
    ],
)
def test_a_malformed_url_is_one_line_without_the_password(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(connecting.DatabaseError) as raised:
        connecting.DatabaseSettings(url=url).conninfo()
    assert not raised.value.retryable
    monkeypatch.setenv("PGJOBS_DATABASE_URL", url)
    assert main.main(["jobs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pgjobs: error: ") and err.count("\n") == 1, err
    assert "s3cretpw" not in err and "not a valid PostgreSQL URL" in err
