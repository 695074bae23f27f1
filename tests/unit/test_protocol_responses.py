"""Response parsing in the sans-IO core (C6, C7, C8, C11, C14) and hypothesis: any body yields a token or a
typed library error, never anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokensmith import exceptions as exc
from tokensmith._protocol.device import parse_device_authorization
from tokensmith._protocol.errors import parse_retry_after
from tokensmith._protocol.messages import HttpResponse
from tokensmith._protocol.token import parse_token_response


def _resp(body: object, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, headers or {"content-type": "application/json"}, raw, received_at=1000.0)


def test_success_with_everything() -> None:
    t = parse_token_response(
        _resp(
            {
                "access_token": "eyJ.a-b_c~d+e/f=",
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": "r",
                "scope": "a b",
                "id_token": "i",
                "extra": {"x": 1},
            }
        )
    )
    assert (t.access_token, t.token_type, t.expires_in, t.refresh_token, t.scope) == (
        "eyJ.a-b_c~d+e/f=",
        "bearer",
        3600,
        "r",
        "a b",
    )
    assert t.expires_at == 4600.0  # absolute, from receipt time
    assert t.raw["extra"] == {"x": 1}  # C6: unknown members ignored, but kept


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("3599", 3599), (59.2, 60), ("0", 0), (0, 0)])
def test_expires_in_optional_and_coerced(value: object, expected: int | None) -> None:
    """C6: expires_in is RECOMMENDED, not required; Azure v1 sends strings."""
    body: dict[str, object] = {"access_token": "a", "token_type": "Bearer"}
    if value is not None:
        body["expires_in"] = value
    assert parse_token_response(_resp(body)).expires_in == expected


@pytest.mark.parametrize("value", ["soon", -1, True, [1], "NaN"])
def test_bad_expires_in_is_a_typed_error(value: object) -> None:
    with pytest.raises(exc.InvalidResponse):
        parse_token_response(_resp({"access_token": "a", "token_type": "Bearer", "expires_in": value}))


def test_token_type_is_checked() -> None:
    """C7: never use a token whose type is not understood; compare case-insensitively."""
    with pytest.raises(exc.UnexpectedTokenType):
        parse_token_response(_resp({"access_token": "a", "token_type": "mac"}))
    assert parse_token_response(_resp({"access_token": "a", "token_type": "BEARER"})).token_type == "BEARER"
    assert parse_token_response(_resp({"access_token": "a"})).token_type == "Bearer"  # absent: assumed Bearer


@pytest.mark.parametrize("token", ["abc def", "abc\r\nX-Injected: 1", "", "é", "a=b"])
def test_access_token_must_be_a_b64token(token: str) -> None:
    """C11: the token goes into a header; anything outside b64token could inject one."""
    with pytest.raises(exc.InvalidResponse):
        parse_token_response(_resp({"access_token": token, "token_type": "Bearer"}))


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_request", exc.InvalidRequest),
        ("invalid_client", exc.InvalidClient),
        ("invalid_grant", exc.InvalidGrant),
        ("unauthorized_client", exc.UnauthorizedClient),
        ("unsupported_grant_type", exc.UnsupportedGrantType),
        ("invalid_scope", exc.InvalidScope),
        ("access_denied", exc.AccessDenied),
        ("expired_token", exc.ExpiredToken),
        ("authorization_pending", exc.AuthorizationPending),
        ("slow_down", exc.SlowDown),
        ("temporarily_unavailable", exc.TemporarilyUnavailable),
        ("server_error", exc.ServerError),
        ("invalid_target", exc.InvalidTarget),
        ("something_new", exc.OAuthError),
    ],
)
@pytest.mark.parametrize("status", [400, 401, 200])
def test_error_table(code: str, cls: type[Exception], status: int) -> None:
    """C8 and RFC 8628 §3.5; status 200 too, because GitHub sends its errors that way."""
    with pytest.raises(cls) as info:
        parse_token_response(_resp({"error": code, "error_description": "why", "error_uri": "https://e"}, status))
    err = info.value
    assert type(err) is cls
    assert (err.error, err.error_description, err.error_uri, err.status_code) == (  # type: ignore[attr-defined]
        code,
        "why",
        "https://e",
        status,
    )


def test_transient_versus_rejection() -> None:
    with pytest.raises(exc.InvalidGrant) as grant:
        parse_token_response(_resp({"error": "invalid_grant"}, 400))
    assert grant.value.transient is False
    with pytest.raises(exc.InvalidResponse) as html:
        parse_token_response(_resp(b"<html><body>502 Bad Gateway</body></html>", 502, {"content-type": "text/html"}))
    assert html.value.transient is True and html.value.status_code == 502
    assert "<html>" not in str(html.value) and "text/html" in str(html.value)
    with pytest.raises(exc.TemporarilyUnavailable) as busy:
        parse_token_response(_resp({"error": "temporarily_unavailable"}, 503, {"retry-after": "7"}))
    assert busy.value.transient is True and busy.value.retry_after == 7.0


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"null", b"[]", b'"text"', b"42", b"{", b"plain text", b'{"error": 5}', b"\xff\xfe\x00"],
)
def test_non_object_bodies_are_typed_errors(body: bytes) -> None:
    with pytest.raises(exc.InvalidResponse):
        parse_token_response(_resp(body, 200))


def test_non_2xx_without_error_code() -> None:
    with pytest.raises(exc.InvalidResponse) as info:
        parse_token_response(_resp({"message": "nope"}, 403))
    assert info.value.status_code == 403 and info.value.transient is False


def test_redirect_is_refused() -> None:
    """C27: a 307 would re-send the credentials elsewhere."""
    with pytest.raises(exc.UnexpectedRedirect):
        parse_token_response(HttpResponse(307, {"location": "https://evil.example/"}, b""))


def test_secrets_are_scrubbed_from_error_descriptions() -> None:
    """C10: a server echoing our refresh token must not put it into an exception message."""
    secret = "rt-very-secret-value"
    with pytest.raises(exc.InvalidGrant) as info:
        parse_token_response(
            _resp({"error": "invalid_grant", "error_description": f"token {secret} revoked"}, 400), secrets=[secret]
        )
    assert secret not in str(info.value) and secret not in repr(info.value)


def test_error_description_is_sanitised() -> None:
    with pytest.raises(exc.InvalidRequest) as info:
        parse_token_response(_resp({"error": "invalid_request", "error_description": "a\x1b[31mred\nline" + "x" * 900}))
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 600


def test_slow_down_carries_a_new_interval() -> None:
    with pytest.raises(exc.SlowDown) as info:
        parse_token_response(_resp({"error": "slow_down", "interval": 10}, 200))
    assert info.value.interval == 10


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", now=0) == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0
    assert parse_retry_after("garbage", now=0) is None
    assert parse_retry_after(None, now=0) is None


def test_device_authorization_parsing() -> None:
    """C14: interval defaults to 5; `verification_url` accepted; numbers coerced; device_code never shown."""
    d = parse_device_authorization(
        _resp(
            {
                "device_code": "dev-code-secret",
                "user_code": "WDJB-MJHT",
                "verification_url": "https://g.co/device",
                "expires_in": "1800",
            }
        )
    )
    assert (d.interval, d.expires_in, d.verification_uri) == (5, 1800, "https://g.co/device")
    assert "dev-code-secret" not in repr(d)
    with pytest.raises(exc.InvalidResponse):
        parse_device_authorization(_resp({"device_code": "d", "user_code": "u", "verification_uri": "v"}))
    with pytest.raises(exc.InvalidClient):
        parse_device_authorization(_resp({"error": "invalid_client"}, 401))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
token_like = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.text(max_size=30) | json_values,
        "token_type": st.sampled_from(["Bearer", "bearer", "mac", "", "DPoP"]) | json_values,
        "expires_in": st.integers(-5, 10**6) | st.text(max_size=6) | json_values,
        "refresh_token": st.text(max_size=10) | json_values,
        "scope": st.text(max_size=10) | json_values,
        "error": st.sampled_from(["invalid_grant", "slow_down", "authorization_pending", "x", ""]) | json_values,
        "error_description": st.text(max_size=30) | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200), status=st.integers(100, 599))
def test_any_bytes_give_a_token_or_a_typed_error(body: bytes, status: int) -> None:
    try:
        token = parse_token_response(HttpResponse(status, {}, body))
    except exc.TokensmithError as error:
        assert str(error)  # every error says something
        return
    assert 200 <= status < 300 and token.access_token


@settings(max_examples=400, deadline=None)
@given(obj=token_like | json_values, status=st.sampled_from([200, 201, 400, 401, 404, 429, 500, 502, 503]))
def test_any_json_gives_a_token_or_a_typed_error(obj: object, status: int) -> None:
    try:
        token = parse_token_response(_resp(obj, status))
    except exc.TokensmithError:
        return
    assert 200 <= status < 300 and isinstance(token.access_token, str) and token.access_token
    assert token.expires_in is None or token.expires_in >= 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user_code", "WDJB\x1b[2J-MJHT"),
        ("user_code", "WDJB\nINFO fake log line"),
        ("verification_uri", "https://idp.example/device\x1b]52;c;ZXZpbA==\x07"),
        ("verification_uri", "https://idp.example/\x9b31m"),
        ("verification_url", "https://idp.example/\x7f"),
        ("verification_uri_complete", "https://idp.example/device?c=\x00"),
    ],
)
def test_device_authorization_with_control_characters_is_refused(name: str, value: str) -> None:
    """What a person sees (and the library logs) must not carry terminal escapes or forged log lines."""
    obj = {"device_code": "d", "user_code": "U", "verification_uri": "https://v", "expires_in": 60, name: value}
    if name == "verification_url":
        del obj["verification_uri"]
    with pytest.raises(exc.InvalidResponse, match="control characters") as info:
        parse_device_authorization(_resp(obj))
    assert value not in str(info.value)


def test_device_authorization_message_loses_its_control_characters() -> None:
    """Azure's ready-made ``message`` is shown by callers as is: no terminal escape or newline survives in it."""
    d = parse_device_authorization(
        _resp(
            {
                "device_code": "d",
                "user_code": "U",
                "verification_uri": "https://v",
                "expires_in": 60,
                "message": "Open https://v\x1b]52;c;ZXZpbA==\x07 and enter U\nforged: log line",
            }
        )
    )
    assert d.message == "Open https://v ]52;c;ZXZpbA==  and enter U forged: log line"


def test_device_authorization_with_format_characters_is_left_to_the_presenter() -> None:
    """Bidi and zero-width characters are no terminal command; the presenter hides them when it shows them."""
    d = parse_device_authorization(
        _resp({"device_code": "d", "user_code": "WDJB\u202e\u200b", "verification_uri": "https://v", "expires_in": 60})
    )
    assert d.user_code == "WDJB\u202e\u200b"


@settings(max_examples=300, deadline=None)
@given(
    obj=st.fixed_dictionaries(
        {},
        optional={
            "device_code": st.text(max_size=8) | json_values,
            "user_code": st.text(max_size=8) | json_values,
            "verification_uri": st.text(max_size=8) | json_values,
            "verification_url": st.text(max_size=8),
            "expires_in": st.integers(-3, 9999) | st.text(max_size=5) | json_values,
            "interval": st.integers(-3, 99) | st.text(max_size=5) | json_values,
        },
    )
    | json_values
)
def test_any_device_response_gives_a_result_or_a_typed_error(obj: object) -> None:
    try:
        d = parse_device_authorization(_resp(obj))
    except exc.TokensmithError:
        return
    assert d.interval >= 0 and d.expires_in >= 0 and d.device_code and d.user_code and d.verification_uri


# --- issue 7 item 17 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "\uff15", "1\u00b2", " ", "-5", "1e3", "0x10"])
def test_retry_after_accepts_ascii_digits_only(value: str) -> None:
    """``str.isdigit()`` is True for "²" and "٣": ``float("²")`` then raised ValueError out of the parser."""
    from tokensmith._protocol.errors import parse_retry_after

    assert parse_retry_after(value, now=0.0) is None


def test_retry_after_is_bounded() -> None:
    from tokensmith._protocol.errors import MAX_RETRY_AFTER, parse_retry_after

    assert parse_retry_after("9" * 400, now=0.0) == MAX_RETRY_AFTER
    assert parse_retry_after("120", now=0.0) == 120.0


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"attempts": -1}, {"attempts": 1.5}, {"backoff": -1}, {"max_wait": float("nan")}]
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    import tokensmith

    with pytest.raises(ValueError):
        tokensmith.RetryPolicy(**kwargs)  # type: ignore[arg-type]
