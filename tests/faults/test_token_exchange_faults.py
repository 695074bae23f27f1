"""Token exchange (RFC 8693 §2.2.1) answers the real IdP will not give: ``token_type=N_A`` for an issued token that
is not an access token, and a response without the REQUIRED ``issued_token_type`` (C7, C30)."""

from __future__ import annotations

import logging

import pytest
import requests

from fault_server import FaultServer, Reply
from tokensmith import ClientSecretBasic, CredentialSourceError, TokenClient, TokenExchangeGrant, UnexpectedTokenType
from tokensmith.grants import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE

ID_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2ln"


def _client(server: FaultServer, **kwargs: object) -> TokenClient:
    return TokenClient(
        server.url("/token"),
        auth=ClientSecretBasic("svc", "svc-secret"),
        session=requests.Session(),
        background_refresh=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_n_a_is_accepted_for_an_issued_token_that_is_not_an_access_token(fault_server: FaultServer) -> None:
    """§2.2.1: "If the issued token is not an access token or usable as an access token, then the token_type value
    N_A is used". Asking for an ID token gets one; it is never put in an Authorization header (C7)."""
    fault_server.script(
        "/token",
        Reply(json={"access_token": ID_TOKEN, "token_type": "N_A", "issued_token_type": ID_TOKEN_TYPE}),
        Reply(json={"access_token": ID_TOKEN, "token_type": "N_A", "issued_token_type": ID_TOKEN_TYPE}),
    )
    grant = TokenExchangeGrant("subject-token-0123456789", requested_token_type=ID_TOKEN_TYPE)
    token = _client(fault_server, grant=grant).get_token()
    assert token.access_token == ID_TOKEN and token.token_type == "N_A" and token.issued_token_type == ID_TOKEN_TYPE
    with pytest.raises(UnexpectedTokenType, match="not an access token"):
        token.authorization  # noqa: B018
    once = _client(fault_server).exchange_token("subject-token-0123456789", requested_token_type=ID_TOKEN_TYPE)
    assert once.token_type == "N_A"


def test_n_a_is_still_refused_outside_token_exchange(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json={"access_token": "at-1", "token_type": "N_A", "expires_in": 60}))
    with pytest.raises(UnexpectedTokenType, match="N_A"):
        _client(fault_server).get_token()


def test_a_missing_issued_token_type_is_reported(fault_server: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    """§2.2.1: issued_token_type is REQUIRED. Like a missing token_type, its absence is tolerated (the token is
    used as the token_type says) but logged as the server's fault; the Token records None, never a guess."""
    fault_server.script("/token", Reply(json={"access_token": "at-1", "token_type": "Bearer", "expires_in": 60}))
    with caplog.at_level(logging.DEBUG, "tokensmith"):  # WARNING once per process, then DEBUG
        token = _client(fault_server, grant=TokenExchangeGrant("subject-token-0123456789")).get_token()
    assert token.issued_token_type is None and token.authorization == "Bearer at-1"
    assert any("issued_token_type" in r.getMessage() and "RFC 8693" in r.getMessage() for r in caplog.records)
    assert "subject-token-0123456789" not in caplog.text


def test_a_present_issued_token_type_logs_nothing(fault_server: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    body = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 60, "issued_token_type": ACCESS_TOKEN_TYPE}
    fault_server.script("/token", Reply(json=body))
    with caplog.at_level(logging.WARNING, "tokensmith"):
        _client(fault_server, grant=TokenExchangeGrant("subject-token-0123456789")).get_token()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class RotatingFile:
    """A subject token read from a projected service-account file that rotation briefly removes or empties."""

    def __init__(self) -> None:
        self.state = "ok"

    def __call__(self) -> str:
        if self.state == "missing":
            raise FileNotFoundError(2, "No such file", "/var/run/secrets/tokens/kms-credential-path")
        return "" if self.state == "empty" else "subject-token-0123456789"


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_failing_subject_token_callable_is_transient_and_serves_the_valid_token(
    fault_server: FaultServer, state: str
) -> None:
    """A failure path keeps what it had: the callable that supplies the subject token (or a JWT bearer assertion)
    failing while the token is renewed ahead of expiry is a CredentialSourceError (typed, transient, naming only
    the exception type), so the caller gets the still-valid token; without one, that error and no request."""
    body = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 600, "issued_token_type": ACCESS_TOKEN_TYPE}
    fault_server.default("/token", Reply(json=body))
    source = RotatingFile()
    clock = [1_700_000_000.0]
    client = _client(fault_server, grant=TokenExchangeGrant(source), clock=lambda: clock[0])
    first = client.get_token()
    assert first.refresh_at is not None and first.must_refresh_at is not None
    source.state = state
    clock[0] = (first.refresh_at + first.must_refresh_at) / 2
    assert client.get_token() == first
    assert fault_server.count("/token") == 1
    fresh = _client(fault_server, grant=TokenExchangeGrant(source, cache_id="other"))
    with pytest.raises(CredentialSourceError) as raised:
        fresh.get_token()
    assert raised.value.transient and "subject_token" in str(raised.value)
    assert "kms-credential-path" not in str(raised.value) and raised.value.__cause__ is None
    assert fault_server.count("/token") == 1
