"""What the real IdP won't do, against the fault server: the transport and compat module under bad networks
and bad servers (IDP-QUIRKS "what the original gets wrong" 2, 3, 6, 9, 10; C3, C8, C27, C32)."""

from __future__ import annotations

import logging

import pytest
import requests

from fault_server import FaultServer, Reply
from tokensmith import exceptions as exc
from tokensmith import token_client as tc
from tokensmith._transport import Transport

TOKEN = {"access_token": "at-123", "token_type": "Bearer", "expires_in": 300}


def test_a_pooled_connection_is_reused_without_a_session(fault_server: FaultServer) -> None:
    """Fix 2: the seed opened a new session (and TCP connection) per call."""
    fault_server.default("/token", Reply(json=TOKEN))
    for _ in range(3):
        assert tc.get_token(fault_server.url("/token"), client_id="c")[0] == "at-123"
    peers = {r.peer for r in fault_server.recorded("/token")}
    assert fault_server.count("/token") == 3 and len(peers) == 1


def test_read_timeout_is_a_typed_transient_error(fault_server: FaultServer) -> None:
    """Fix 2 / C32: every request has a timeout."""
    fault_server.script("/token", Reply(json=TOKEN, delay=5))
    with pytest.raises(exc.RequestTimeout) as info:
        tc.get_token(fault_server.url("/token"), client_id="c", timeout=0.3)
    # Issue 7 A.1: not the server's verdict, so not an AuthenticationError; the requests exception the seed raised.
    assert info.value.transient and not isinstance(info.value, exc.AuthenticationError)
    assert isinstance(info.value, requests.Timeout)


def test_default_timeout_is_always_passed() -> None:
    session = requests.Session()
    seen: list[object] = []

    def spy(url: str, **kwargs: object) -> requests.Response:
        seen.append(kwargs.get("timeout"))
        raise requests.exceptions.ConnectionError("refused")

    session.post = spy  # type: ignore[method-assign]
    with pytest.raises(exc.ConnectError):
        tc.get_token("https://idp.example/token", client_id="c", session=session)
    assert seen == [(10.0, 30.0)]


def test_html_502_is_a_typed_error_with_status(fault_server: FaultServer) -> None:
    """Fix 3: the seed called .json() on an HTML page and crashed with a JSONDecodeError."""
    fault_server.script(
        "/token", Reply(status=502, body="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html")
    )
    with pytest.raises(exc.InvalidResponse) as info:
        tc.get_token(fault_server.url("/token"), client_id="c")
    assert info.value.status_code == 502 and info.value.transient
    assert "Bad Gateway" not in str(info.value)  # bodies are described, never pasted (fix 9)


def test_plain_text_and_array_bodies(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(status=200, body="OK"), Reply(status=200, json=["a"]))
    for _ in range(2):
        with pytest.raises(exc.InvalidResponse):
            tc.get_token(fault_server.url("/token"), client_id="c")


def test_http_200_error_body_is_recognised(fault_server: FaultServer) -> None:
    """Fix 6: GitHub answers errors with HTTP 200."""
    fault_server.script("/token", Reply(status=200, json={"error": "invalid_grant", "error_description": "gone"}))
    with pytest.raises(exc.InvalidGrant) as info:
        tc.get_token(
            fault_server.url("/token"),
            client_id="c",
            grant_type=tc.GrantType.REFRESH_TOKEN,
            refresh_token="rt-secret-1234",
        )
    assert info.value.status_code == 200 and info.value.error_description == "gone"


@pytest.mark.parametrize("omit_length", [False, True])
def test_huge_bodies_are_capped_without_reading_them(fault_server: FaultServer, omit_length: bool) -> None:
    """C32: cap the body; a 64 MiB answer is refused after at most the cap plus one chunk."""
    fault_server.script("/token", Reply(stream_bytes=64 * 1024 * 1024, omit_length=omit_length))
    transport = Transport(requests.Session(), max_body=1024 * 1024)
    from tokensmith._protocol.messages import HttpRequest

    with pytest.raises(exc.ResponseTooLarge):
        transport.post(HttpRequest(fault_server.url("/token"), [("grant_type", "client_credentials")]))


def test_redirects_on_post_are_not_followed(fault_server: FaultServer) -> None:
    """Fix 10 / C27: a 307 would re-send the refresh token to wherever Location points."""
    fault_server.script("/token", Reply(status=307, headers={"Location": fault_server.url("/elsewhere")}))
    fault_server.default("/elsewhere", Reply(json=TOKEN))
    with pytest.raises(exc.UnexpectedRedirect):
        tc.get_token(
            fault_server.url("/token"),
            client_id="c",
            grant_type=tc.GrantType.REFRESH_TOKEN,
            refresh_token="rt-secret-1234",
        )
    assert fault_server.count("/elsewhere") == 0


def test_dropped_connection_is_a_typed_transient_error(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(drop=True))
    with pytest.raises(exc.ConnectError) as info:
        tc.get_token(fault_server.url("/token"), client_id="c", session=requests.Session())
    assert info.value.transient


def test_plain_http_to_a_remote_host_is_refused_before_any_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix 10 / C24."""
    monkeypatch.delenv("TOKENSMITH_ALLOW_INSECURE_HTTP", raising=False)
    session = requests.Session()
    calls: list[str] = []
    session.post = lambda url, **kw: calls.append(url)  # type: ignore[method-assign, assignment, return-value]
    with pytest.raises(exc.InsecureEndpointError):
        tc.get_token("http://idp.example.com/token", client_id="c", session=session)
    with pytest.raises(exc.InsecureEndpointError):
        tc.get_device_code("http://idp.example.com/device", "c", session=session)
    assert calls == []


def test_empty_scope_and_mangling_are_gone(fault_server: FaultServer) -> None:
    """Fix 10 / C3, C4: no empty `scope=`, no stripping of `[]'`."""
    fault_server.default("/token", Reply(json=TOKEN))
    fault_server.default(
        "/device", Reply(json={"device_code": "d", "user_code": "U", "verification_uri": "https://v", "expires_in": 60})
    )
    tc.get_token(fault_server.url("/token"), client_id="c", scopes=[])
    tc.get_token(fault_server.url("/token"), client_id="c", scopes=["[all]", "api:read"])
    tc.get_device_code(fault_server.url("/device"), "c")
    first, second = fault_server.recorded("/token")
    assert "scope" not in dict(first.form)
    assert dict(second.form)["scope"] == "[all] api:read"
    assert [k for k, _ in fault_server.recorded("/device")[0].form] == ["client_id"]


def test_nothing_secret_reaches_logs_or_messages(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fix 9 / C10: no print, no body at ERROR, no secret in any log line or exception message."""
    secret, refresh = "cs-sup3r-secret", "rt-sup3r-secret"
    fault_server.script(
        "/token",
        Reply(status=400, json={"error": "invalid_grant", "error_description": f"refresh token {refresh} revoked"}),
        Reply(status=502, body=f"<html>proxy saw {refresh}</html>", content_type="text/html"),
        Reply(json={"access_token": "at-sup3r-secret", "token_type": "Bearer", "refresh_token": "rt-2-secret"}),
    )
    header = tc.get_basic_authorization_header("c", secret)
    messages = []
    with caplog.at_level(logging.DEBUG, logger="tokensmith"):
        for _ in range(2):
            with pytest.raises(exc.TokensmithError) as info:
                tc.get_token(
                    fault_server.url("/token"),
                    authorization_header=header,
                    grant_type=tc.GrantType.REFRESH_TOKEN,
                    refresh_token=refresh,
                )
            messages += [str(info.value), repr(info.value)]
        tc.get_token(
            fault_server.url("/token"),
            authorization_header=header,
            grant_type=tc.GrantType.REFRESH_TOKEN,
            refresh_token=refresh,
        )
    text = "\n".join(messages + [r.getMessage() for r in caplog.records])
    assert caplog.records, "expected debug log lines from the transport"
    for value in (secret, refresh, header, header.split()[1], "at-sup3r-secret", "rt-2-secret"):
        assert value not in text
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_user_agent_is_sent(fault_server: FaultServer) -> None:
    fault_server.default("/token", Reply(json=TOKEN))
    tc.get_token(fault_server.url("/token"), client_id="c", session=requests.Session())
    assert fault_server.recorded("/token")[0].headers["user-agent"].startswith("tokensmith/")


def test_a_compressed_bomb_is_capped_after_decoding(fault_server: FaultServer) -> None:
    """C32: the cap applies to the decoded body: 64 MiB of zeros gzip to ~64 KiB, under the cap on the wire."""
    import gzip

    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))
    assert len(bomb) < 1024 * 1024
    fault_server.script(
        "/token", Reply(body=bomb, content_type="application/json", headers={"Content-Encoding": "gzip"})
    )
    from tokensmith._protocol.messages import HttpRequest

    with pytest.raises(exc.ResponseTooLarge):
        Transport(requests.Session()).post(HttpRequest(fault_server.url("/token"), [("grant_type", "x")]))
