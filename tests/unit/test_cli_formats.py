"""``tokensmith token --format exec-credential`` with the lifetimes servers really send (issue 10 review: a huge
``expires_in`` is accepted, capped at 2**62 s, by the parser, C6)."""

from __future__ import annotations

import json

import pytest

from tokensmith.cli.formats import render

NOW = 1_700_000_000.0


@pytest.mark.parametrize("lifetime", [10.0**12, 2.0**61, 2.0**62])
def test_exec_credential_with_an_absurd_lifetime_is_a_valid_rfc3339_timestamp(lifetime: float) -> None:
    """client-go parses ``expirationTimestamp`` as RFC 3339 (a four-digit year); a token valid for thousands of
    years must still render (not crash the exec plugin with OverflowError/OSError) as the latest such time."""
    text = render("exec-credential", "at-1", "Bearer", NOW + lifetime, renew_at=NOW + lifetime / 2, now=NOW)
    stamp = json.loads(text)["status"]["expirationTimestamp"]
    assert stamp == "9999-12-31T23:59:59Z"


def test_exec_credential_with_an_ordinary_lifetime_is_unchanged() -> None:
    text = render("exec-credential", "at-1", "Bearer", NOW + 3600, renew_at=NOW + 3000, now=NOW)
    assert json.loads(text)["status"]["expirationTimestamp"] == "2023-11-14T23:03:20Z"
