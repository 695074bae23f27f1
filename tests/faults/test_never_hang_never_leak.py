"""Issue 7, "never hang" and "never leak": the total request deadline, endpoints with invisible characters,
``~/.netrc``, redaction of secrets in the forms servers echo them, and the compat module's failure types.

Every test goes through a public entry point (the compat functions, ``TokenClient``) against the fault server.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests

import tokensmith
from fault_server import FaultServer, Reply
from tokensmith import token_client as tc

TOKEN = {"access_token": "at-123", "token_type": "Bearer", "expires_in": 300}


# --- C: never hang (item 9) ---------------------------------------------------------------------------------


def test_a_trickling_server_is_cut_off_by_the_total_deadline(fault_server: FaultServer) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the total deadline ends the request."""
    fault_server.script("/token", Reply(json=TOKEN, trickle=0.2))
    with pytest.raises(tokensmith.RequestTimeout, match="total deadline of 1 s") as info:
        # 1 s per read (never trips: a byte comes every 0.2 s) and 1 s in all (trips).
        tc.get_token(fault_server.url("/token"), client_id="c", timeout=1.0, session=requests.Session())
    error = info.value
    assert isinstance(error, requests.Timeout) and not isinstance(error, tokensmith.AuthenticationError)
    assert fault_server.count("/token") == 1


def test_a_trickling_server_cannot_hold_token_client_callers(fault_server: FaultServer) -> None:
    """The same through TokenClient, from several threads: each gets the typed timeout, none hangs, and the
    single flight made one request (not one per thread)."""
    fault_server.default("/token", Reply(json=TOKEN, trickle=0.2))
    client = tokensmith.TokenClient(
        fault_server.url("/token"),
        "svc",
        "secret",
        transport=tokensmith.Transport(requests.Session(), timeout=5.0, total_timeout=1.0),
        retry=tokensmith.RetryPolicy(attempts=1),
    )
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client.get_token()
        except tokensmith.TokensmithError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 5 and all(isinstance(e, tokensmith.RequestTimeout) for e in errors)
    assert fault_server.count("/token") == 1


def test_total_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="total timeout"):
        tokensmith.Transport(requests.Session(), total_timeout=0)


# --- D: never trust (item 13) -------------------------------------------------------------------------------


class _Spy(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.calls.append(str(url))
        return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    ["\u00a0http://evil.example/token", "https://idp.example/token\u2028", "https://idp.example/\u200btoken"],
)
def test_invisible_characters_in_an_endpoint_are_refused_before_any_request(url: str) -> None:
    """``"\\u00a0http://evil.example/token"`` passed the plain-http check and requests stripped the space: the
    secret went out over plain http. Now nothing is sent."""
    spy = _Spy()
    header = tc.get_basic_authorization_header("c", "s3cret")
    with pytest.raises(tokensmith.InvalidEndpointError, match="invisible"):
        tc.get_token(url, authorization_header=header, session=spy)
    with pytest.raises(tokensmith.InvalidEndpointError):
        tokensmith.TokenClient(url, "c", "s3cret")
    assert spy.calls == []


def test_discovered_endpoints_are_checked_too(fault_server: FaultServer) -> None:
    issuer = fault_server.url("/i")
    fault_server.default(
        "/i/.well-known/openid-configuration",
        Reply(json={"issuer": issuer, "token_endpoint": "\u00a0http://evil.example/token"}),
    )
    client = tokensmith.TokenClient.from_issuer(issuer, "c", "s3cret", session=requests.Session())
    with pytest.raises(tokensmith.DiscoveryError):
        client.get_token()
    assert fault_server.count() == 1


def test_netrc_never_replaces_the_client_credentials(
    fault_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``~/.netrc`` entry for the IdP host silently replaced the client's Basic header (requests consults it
    when no ``auth`` is given)."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login intruder password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    fault_server.default("/token", Reply(json=TOKEN))
    header = tc.get_basic_authorization_header("client", "secret")
    tc.get_token(fault_server.url("/token"), authorization_header=header, session=requests.Session())
    client = tokensmith.TokenClient(fault_server.url("/token"), "client", "secret", session=requests.Session())
    client.get_token()
    intruder = "Basic " + base64.b64encode(b"intruder:from-netrc").decode()
    sent = [r.headers.get("authorization") for r in fault_server.recorded("/token")]
    assert len(sent) == 2 and intruder not in sent
    assert sent[0] == header and sent[1] == tokensmith.basic_authorization("client", "secret")


# --- D: never leak (item 14) --------------------------------------------------------------------------------

SECRET = "cs/sup3r+secret value"
REFRESH = "rt-sup3r/secret+value"


@pytest.mark.parametrize(
    "echo",
    [
        REFRESH,
        quote(REFRESH, safe=""),
        quote_plus(REFRESH),
        quote(REFRESH, safe="").lower(),
        json.dumps(REFRESH)[1:-1].replace("/", "\\/"),  # JSON-escaped as some servers do
        base64.b64encode(f"client:{quote_plus(SECRET)}".encode()).decode(),  # the bare Basic credentials
        quote_plus(SECRET),
    ],
)
def test_secrets_are_scrubbed_in_every_encoded_form(
    fault_server: FaultServer, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoes what we sent, in the encoding it happened to use, in error_description and error_uri;
    and a 500-character cut must not leave half a secret behind (scrub first, then truncate)."""
    padding = "x" * 490  # the secret straddles the 500-character cut
    fault_server.default(
        "/token",
        Reply(
            status=400,
            json={
                "error": "invalid_grant",
                "error_description": f"{padding}{echo} was rejected",
                "error_uri": f"https://idp.example/errors?token={echo}",
            },
        ),
    )
    client = tokensmith.TokenClient(
        fault_server.url("/token"), "client", SECRET, grant="device_code", session=requests.Session()
    )
    client.store.save(client.cache_key, tokensmith.Token("at-old", expires_at=1.0, refresh_token=REFRESH))
    with caplog.at_level(logging.DEBUG, logger="tokensmith"), pytest.raises(tokensmith.LoginRequired) as info:
        client.get_token()
    grant = info.value.__cause__
    assert isinstance(grant, tokensmith.InvalidGrant)
    text = "\n".join(
        [str(info.value), repr(info.value), str(grant), str(grant.error_description), str(grant.error_uri)]
        + [r.getMessage() for r in caplog.records]
    )
    for needle in (echo, echo[:20], echo[-20:], REFRESH, SECRET):
        assert needle not in text
    assert "***" in str(grant.error_description) or "***" in str(grant.error_uri)


# --- A.1: what the compat module raises -----------------------------------------------------------------------


def test_compat_failures_that_are_not_verdicts_are_requests_exceptions(fault_server: FaultServer) -> None:
    url = fault_server.url("/token")
    fault_server.script(
        "/token",
        Reply(status=502, body="<html>Bad Gateway</html>", content_type="text/html"),
        Reply(status=503, json={"message": "down for maintenance"}),
        Reply(drop=True),
        Reply(status=400, json={"error": "invalid_grant"}),
        Reply(status=400, json={"message": "no OAuth error code"}),
    )
    kinds = []
    for _ in range(5):
        with pytest.raises(tokensmith.TokensmithError) as info:
            tc.get_token(url, client_id="c", grant_type=tc.GrantType.REFRESH_TOKEN, refresh_token="rt-abcdefgh")
        kinds.append(info.value)
    html, maintenance, dropped, verdict, no_code = kinds
    assert isinstance(html, requests.exceptions.JSONDecodeError) and isinstance(html, tokensmith.NonJSONResponse)
    assert isinstance(maintenance, requests.HTTPError) and maintenance.status_code == 503
    assert isinstance(dropped, requests.ConnectionError) and isinstance(dropped, tokensmith.ConnectError)
    for error in (html, maintenance, dropped):
        assert not isinstance(error, tokensmith.AuthenticationError)
    assert isinstance(verdict, tokensmith.InvalidGrant) and isinstance(verdict, tokensmith.AuthenticationError)
    # As the seed: a 4xx that is not OAuth was reported as an AuthenticationError ("Status Code (400) ...").
    assert isinstance(no_code, tokensmith.AuthenticationError) and isinstance(no_code, tokensmith.InvalidResponse)


def test_compat_connection_refused_is_a_requests_connection_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    with pytest.raises(requests.ConnectionError) as info:
        tc.get_token(f"http://127.0.0.1:{port}/token", client_id="c", session=requests.Session())
    assert isinstance(info.value, tokensmith.ConnectError) and info.value.request_sent is False
    assert isinstance(info.value.__cause__, requests.ConnectionError)  # the original is chained


def test_environment_opt_out_for_plain_http_is_read_by_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENSMITH_ALLOW_INSECURE_HTTP", raising=False)
    with pytest.raises(tokensmith.InsecureEndpointError):
        tc.get_token("http://idp.example.com/token", client_id="c")
    assert "TOKENSMITH_ALLOW_INSECURE_HTTP" not in os.environ
