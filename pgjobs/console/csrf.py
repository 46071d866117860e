"""Cross-site request forgery checks: a per-session token (cookie + hidden form field) and Origin.

Every page sets a random token in a cookie the first time; every form carries it in a hidden
field; a POST is accepted only when both are present and equal, and when its Origin (which
browsers send with every cross-site POST) names the console's own host. A page of another site
can make a browser send the cookie, but can neither read it nor write it into the form.
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse

COOKIE = "pgjobs_csrf"
FIELD = "csrf"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(cookie: str | None, field: str | None) -> bool:
    """Whether the form's token is the session's (both present, equal; constant-time compare)."""
    if not cookie or not field:
        return False
    return hmac.compare_digest(cookie.encode(), field.encode())


def origin_allowed(origin: str | None, hosts: set[str]) -> bool:
    """Whether a POST's Origin header is one of the console's own `hosts` (host[:port] as the
    browser addressed it: Host, or X-Forwarded-Host behind a proxy). No Origin at all is a
    client that is not a browser (curl), which still needs the token; "null" is refused."""
    if origin is None:
        return True
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return False
    return parsed.netloc.lower() in {host.lower() for host in hosts if host}
