"""The drop-in ``token_client`` on a refresh, as flytekit's ``DeviceCodeAuthenticator`` uses it: what it returns
becomes the stored credentials, and any ``AuthenticationError`` makes it delete them and start a device login.
So a refresh must hand back a refresh token that still works (RFC 6749 §6, C9), and an answer that is not a
verdict on the credentials (a rate limit, ``server_error``, ``temporarily_unavailable``) must not be an
``AuthenticationError`` (IDP-QUIRKS, "What callers of the original rely on")."""

from __future__ import annotations

import pytest

from fault_server import FaultServer, Reply
from tokensmith import token_client as tc


def _refresh(server: FaultServer) -> tuple[str, str | None, int | None]:
    return tc.get_token(
        server.url("/token"), client_id="c", grant_type=tc.GrantType.REFRESH_TOKEN, refresh_token="rt-old-123"
    )


@pytest.mark.parametrize("sent", [None, ""], ids=["absent", "empty"])
def test_a_refresh_without_a_new_refresh_token_returns_the_one_that_was_sent(
    fault_server: FaultServer, sent: str | None
) -> None:
    """RFC 6749 §6: "If none is returned, keep the old one." flytekit stores whatever comes back; None would
    lose the still-valid refresh token and force a device login at the next refresh."""
    body: dict[str, object] = {"access_token": "at-2", "token_type": "Bearer", "expires_in": 60}
    if sent is not None:
        body["refresh_token"] = sent
    fault_server.script("/token", Reply(json=body))
    assert _refresh(fault_server) == ("at-2", "rt-old-123", 60)


def test_a_rotated_refresh_token_is_returned_and_other_grants_get_none(fault_server: FaultServer) -> None:
    fault_server.script(
        "/token",
        Reply(json={"access_token": "at-2", "token_type": "Bearer", "refresh_token": "rt-new-456"}),
        Reply(json={"access_token": "at-3", "token_type": "Bearer"}),
    )
    assert _refresh(fault_server) == ("at-2", "rt-new-456", None)
    assert tc.get_token(fault_server.url("/token"), authorization_header="Basic eDp5") == ("at-3", None, None)
