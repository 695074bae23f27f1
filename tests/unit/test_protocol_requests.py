"""Request building in the sans-IO core: client authentication (C1, C2), parameters (C3, C4), endpoints (C24)."""

from __future__ import annotations

import base64
from urllib.parse import unquote_plus

import pytest
import requests

from tokensmith._protocol.client_auth import (
    ClientSecretBasic,
    ClientSecretPost,
    NoClientAuth,
    PrebuiltAuthorization,
    basic_authorization,
)
from tokensmith._protocol.device import device_authorization_request, device_token_request
from tokensmith._protocol.params import normalize_scope
from tokensmith._protocol.token import GrantType, token_request
from tokensmith._protocol.urls import check_endpoint
from tokensmith._transport import Transport
from tokensmith.exceptions import InsecureEndpointError, InvalidEndpointError


def _decode_basic(value: str) -> tuple[str, str]:
    user, _, password = base64.b64decode(value.removeprefix("Basic ")).decode().partition(":")
    return user, password


def test_rfc6749_basic_encodes_both_parts() -> None:
    """C1: RFC 6749 §2.3.1 form-encodes id and secret before base64; ':' and '+' must survive."""
    header = basic_authorization("urn:app/cc:odd", "s3cr:t% +x", "rfc6749")
    user, password = _decode_basic(header)
    assert user == "urn%3Aapp%2Fcc%3Aodd" and password == "s3cr%3At%25+%2Bx"
    assert (unquote_plus(user), unquote_plus(password)) == ("urn:app/cc:odd", "s3cr:t% +x")


def test_secret_only_and_raw_basic_variants() -> None:
    assert basic_authorization("client_id", "abc%%$?\\/\\/", "secret_only") == (
        "Basic Y2xpZW50X2lkOmFiYyUyNSUyNSUyNCUzRiU1QyUyRiU1QyUyRg=="
    )
    assert _decode_basic(basic_authorization("id", "a+b c", "raw")) == ("id", "a+b c")
    with pytest.raises(ValueError, match="cannot contain"):
        basic_authorization("a:b", "s", "raw")


def test_exactly_one_client_authentication_method() -> None:
    """C2: Basic puts nothing in the body; post puts both in the body and no header."""
    basic = token_request("https://idp/token", GrantType.CLIENT_CREDS, ClientSecretBasic("id", "sec"))
    assert "Authorization" in basic.headers
    assert [k for k, _ in basic.form] == ["grant_type"]
    post = token_request("https://idp/token", GrantType.CLIENT_CREDS, ClientSecretPost("id", "sec"))
    assert "Authorization" not in post.headers
    assert ("client_id", "id") in post.form and ("client_secret", "sec") in post.form
    public = token_request(
        "https://idp/token", GrantType.REFRESH_TOKEN, NoClientAuth("pub"), params=[("refresh_token", "rt-123456")]
    )
    assert public.form == [("grant_type", "refresh_token"), ("client_id", "pub"), ("refresh_token", "rt-123456")]
    assert "rt-123456" in public.secrets


def test_empty_parameters_are_omitted() -> None:
    """C3: a parameter without a value is the same as an absent one, so none is sent."""
    req = token_request(
        "https://idp/token",
        GrantType.CLIENT_CREDS,
        NoClientAuth(None),
        scope=[],
        params=[("audience", None), ("resource", ""), ("device_code", None)],
    )
    assert req.form == [("grant_type", "client_credentials")]


def test_repeated_parameters_are_kept() -> None:
    req = token_request(
        "https://idp/token",
        GrantType.CLIENT_CREDS,
        NoClientAuth("c"),
        params=[("resource", ["https://a/", "https://b/"])],
    )
    assert [v for k, v in req.form if k == "resource"] == ["https://a/", "https://b/"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ([], None),
        (["openid", "offline_access"], "openid offline_access"),
        ("openid  offline_access", "openid offline_access"),
        (["a b", "b", "c"], "a b c"),
        (["[all]"], "[all]"),  # the seed stripped brackets and quotes; they are legal scope characters
        (["'quoted'"], "'quoted'"),
    ],
)
def test_scope_normalisation(given: object, expected: str | None) -> None:
    assert normalize_scope(given) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [['say"hi'], ["back\\slash"], ["tab\x01"], [3]])
def test_invalid_scope_tokens_are_rejected(bad: list[object]) -> None:
    """C4: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )."""
    with pytest.raises(ValueError):
        normalize_scope(bad)  # type: ignore[arg-type]


def test_device_requests() -> None:
    """C13, C16: client_id for a public client; no scope on the polling request."""
    start = device_authorization_request(
        "https://idp/device", NoClientAuth("pub"), scope="openid", params=[("audience", None)]
    )
    assert start.form == [("client_id", "pub"), ("scope", "openid")]
    poll = device_token_request("https://idp/token", ClientSecretBasic("conf", "s"), "dc-secret")
    assert dict(poll.form) == {"grant_type": GrantType.DEVICE_CODE.value, "device_code": "dc-secret"}
    assert "dc-secret" in poll.secrets
    assert "dc-secret" not in repr(poll)


def test_prebuilt_header_rejects_line_breaks() -> None:
    with pytest.raises(ValueError):
        PrebuiltAuthorization("Basic abc\r\nX-Evil: 1").apply([], {})


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example/token",
        "http://127.0.0.1:8080/token",
        "http://[::1]:9/t",
        "http://localhost/t",
        "http://127.5.6.7/t",
    ],
)
def test_allowed_endpoints(url: str) -> None:
    assert check_endpoint(url, allow_insecure=False) == url


def test_plain_http_refused_for_remote_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """C24: TLS everywhere but loopback; an explicit opt-out exists for test rigs. The protocol core reads no
    environment (issue 7 item 19): the transport turns TOKENSMITH_ALLOW_INSECURE_HTTP into ``allow_insecure``."""
    monkeypatch.setenv("TOKENSMITH_ALLOW_INSECURE_HTTP", "1")
    with pytest.raises(InsecureEndpointError, match="TOKENSMITH_ALLOW_INSECURE_HTTP"):
        check_endpoint("http://idp.example.com/token")
    assert check_endpoint("http://idp.example.com/token", allow_insecure=True)
    assert Transport(requests.Session()).allow_insecure_http is True
    monkeypatch.delenv("TOKENSMITH_ALLOW_INSECURE_HTTP")
    with pytest.raises(InsecureEndpointError):
        Transport(requests.Session()).check("http://idp.example.com/token")


@pytest.mark.parametrize(
    "url",
    [
        "\u00a0http://evil.example/token",  # requests strips it and would send the secret over plain http
        "http://evil.example/token\u00a0",
        " https://idp.example/token",
        "https://idp.example/token\n",
        "https://idp.example/to ken",
        "https://idp.example/\u200btoken",  # zero-width space
        "https://idp.example/\u202etoken",  # bidi override
        "https://idp.example/\x85token",  # C1 next-line
        "\u3000https://idp.example/token",  # ideographic space
    ],
)
def test_invisible_characters_are_refused(url: str) -> None:
    """Issue 7 item 13: no whitespace or control/format character anywhere in an endpoint."""
    with pytest.raises(InvalidEndpointError, match="whitespace or invisible"):
        check_endpoint(url, allow_insecure=True)


@pytest.mark.parametrize(
    "url", ["ftp://idp.example/token", "file:///etc/passwd", "javascript:alert(1)", "//idp.example/token"]
)
def test_other_schemes_are_refused(url: str) -> None:
    """Issue 7 item 13: only https (and http to loopback)."""
    with pytest.raises(InvalidEndpointError):
        check_endpoint(url)


def test_credentials_in_url_refused() -> None:
    """RFC 6749 §2.3.1: credentials MUST NOT appear in the request URI."""
    with pytest.raises(InvalidEndpointError):
        check_endpoint("https://user:pass@idp.example/token")
