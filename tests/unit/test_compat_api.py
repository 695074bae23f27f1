"""The drop-in contract: same names, signatures, return values and Basic header as
``flytekit.clients.auth.token_client``, and the seed's users' mocking style keeps working."""

from __future__ import annotations

import inspect
import json
from unittest.mock import MagicMock, patch

import pytest

from tokensmith import exceptions as exc
from tokensmith import token_client as tc

# Parameters of the seed functions, in order, with defaults (copied from the seed module's signatures).
SEED_SIGNATURES = {
    "get_basic_authorization_header": [
        ("client_id", inspect.Parameter.empty),
        ("client_secret", inspect.Parameter.empty),
    ],
    "get_token": [
        ("token_endpoint", inspect.Parameter.empty),
        ("scopes", None),
        ("authorization_header", None),
        ("client_id", None),
        ("device_code", None),
        ("audience", None),
        ("grant_type", tc.GrantType.CLIENT_CREDS),
        ("http_proxy_url", None),
        ("verify", None),
        ("session", None),
        ("refresh_token", None),
    ],
    "get_device_code": [
        ("device_auth_endpoint", inspect.Parameter.empty),
        ("client_id", inspect.Parameter.empty),
        ("audience", None),
        ("scope", None),
        ("http_proxy_url", None),
        ("verify", None),
        ("session", None),
    ],
    "poll_token_endpoint": [
        ("resp", inspect.Parameter.empty),
        ("token_endpoint", inspect.Parameter.empty),
        ("client_id", inspect.Parameter.empty),
        ("audience", None),
        ("scopes", None),
        ("http_proxy_url", None),
        ("verify", None),
    ],
}


@pytest.mark.parametrize("name", sorted(SEED_SIGNATURES))
def test_seed_signature_prefix_is_unchanged(name: str) -> None:
    params = list(inspect.signature(getattr(tc, name)).parameters.values())
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [(p.name, p.default) for p in positional] == SEED_SIGNATURES[name]
    # Everything we added is keyword-only, so positional call orders keep working.
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[len(positional) :])


def test_poll_token_endpoint_accepts_a_session_keyword() -> None:
    assert "session" in inspect.signature(tc.poll_token_endpoint).parameters


def test_module_constants_and_grant_type() -> None:
    assert tc.utf_8 == "utf-8"
    assert tc.error_slow_down == "slow_down"
    assert tc.error_auth_pending == "authorization_pending"
    assert issubclass(tc.GrantType, str)
    assert tc.GrantType.CLIENT_CREDS.value == "client_credentials"
    assert tc.GrantType.DEVICE_CODE.value == "urn:ietf:params:oauth:grant-type:device_code"
    assert tc.GrantType.REFRESH_TOKEN.value == "refresh_token"


@pytest.mark.parametrize(
    ("client_id", "secret", "expected"),
    [
        ("client_id", "abc", "Basic Y2xpZW50X2lkOmFiYw=="),
        ("client_id", "abc%%$?\\/\\/", "Basic Y2xpZW50X2lkOmFiYyUyNSUyNSUyNCUzRiU1QyUyRiU1QyUyRg=="),
    ],
)
def test_basic_header_is_byte_identical_to_the_seed(client_id: str, secret: str, expected: str) -> None:
    assert tc.get_basic_authorization_header(client_id, secret) == expected


def test_seed_exceptions_keep_their_ancestry() -> None:
    for cls in (exc.AuthenticationError, exc.AuthenticationPending, exc.AccessTokenNotFoundError):
        assert issubclass(cls, RuntimeError)
    assert issubclass(exc.SlowDown, exc.AuthenticationPending)
    assert issubclass(exc.AuthorizationPending, exc.AuthenticationPending)
    for cls in (exc.AccessDenied, exc.ExpiredToken, exc.InvalidGrant, exc.InvalidClient):
        assert issubclass(cls, exc.AuthenticationError)
    # Issue 7 A.1: failures that are not the server's verdict are not AuthenticationErrors (flytekit would
    # throw the refresh token away on one).
    for cls in (exc.TransportError, exc.RequestTimeout, exc.ConnectError, exc.InvalidResponse, exc.NonJSONResponse):
        assert not issubclass(cls, exc.AuthenticationError)


def test_device_code_response_positional_order_and_new_fields() -> None:
    r = tc.DeviceCodeResponse("dc-secret-value", "ABCD-EFGH", "https://idp/device", 600, 5)
    assert (r.device_code, r.user_code, r.verification_uri, r.expires_in, r.interval) == (
        "dc-secret-value",
        "ABCD-EFGH",
        "https://idp/device",
        600,
        5,
    )
    assert r.verification_uri_complete is None
    assert "dc-secret-value" not in repr(r)  # C15: the device code is never shown
    assert repr(r).startswith("DeviceCodeResponse(")


def test_from_json_response_handles_vendor_quirks() -> None:
    """RFC 8628 §3.2 (C14): interval defaults to 5; Google/Azure v1 `verification_url`; Azure string numbers."""
    r = tc.DeviceCodeResponse.from_json_response(
        {
            "device_code": "d",
            "user_code": "U",
            "verification_url": "https://microsoft.com/devicelogin",
            "expires_in": "900",
            "message": "To sign in, use a web browser",
        }
    )
    assert r.verification_uri == "https://microsoft.com/devicelogin"
    assert r.expires_in == 900 and r.interval == 5
    assert r.message == "To sign in, use a web browser"
    full = tc.DeviceCodeResponse.from_json_response(
        {
            "device_code": "d",
            "user_code": "U",
            "verification_uri": "https://v",
            "verification_uri_complete": "https://v?c=U",
            "expires_in": 600,
            "interval": 7,
        }
    )
    assert full.verification_uri_complete == "https://v?c=U" and full.interval == 7
    with pytest.raises(exc.InvalidResponse):
        tc.DeviceCodeResponse.from_json_response({"user_code": "U", "verification_uri": "v", "expires_in": 1})


def _response(ok: bool, body: object) -> MagicMock:
    response = MagicMock()
    response.ok = ok
    response.json.return_value = body
    return response


@patch("tokensmith.token_client.requests.Session")
def test_patched_session_get_token(mock_session: MagicMock) -> None:
    """The seed's users patch `<module>.requests.Session` and hand back MagicMock responses."""
    mock_session.return_value.post.return_value = _response(
        True, json.loads('{"access_token": "abc", "expires_in": 60, "refresh_token": "r1"}')
    )
    assert tc.get_token("https://corp.idp.net", client_id="abc123", scopes=["my_scope"]) == ("abc", "r1", 60)
    (url,), kwargs = mock_session.return_value.post.call_args
    assert url == "https://corp.idp.net"
    form = kwargs["data"]  # a dict, as the seed module passed it
    assert form["scope"] == "my_scope" and form["client_id"] == "abc123"
    assert kwargs["timeout"] and kwargs["allow_redirects"] is False  # C32, C27


@patch("tokensmith.token_client.requests.Session")
def test_patched_session_device_code_and_polling(mock_session: MagicMock) -> None:
    post = mock_session.return_value.post
    post.return_value = _response(False, MagicMock())  # not ok, body not JSON: still an AuthenticationError
    with pytest.raises(exc.AuthenticationError):
        tc.get_device_code("test.com", "test")
    post.return_value = _response(
        True,
        {"device_code": "code", "user_code": "BNDJJFXL", "verification_uri": "url", "expires_in": 600, "interval": 5},
    )
    c = tc.get_device_code("test.com", "test")
    assert c.device_code == "code" and c.user_code == "BNDJJFXL"

    post.return_value = _response(False, {"error": tc.error_auth_pending})
    pending = tc.DeviceCodeResponse(device_code="x", user_code="y", verification_uri="v", expires_in=1, interval=1)
    with pytest.raises(exc.AuthenticationError):
        tc.poll_token_endpoint(pending, "test.com", "test")
    post.reset_mock()
    post.return_value = _response(True, {"access_token": "abc", "expires_in": 60})
    quick = tc.DeviceCodeResponse(device_code="x", user_code="y", verification_uri="v", expires_in=1, interval=0)
    assert tc.poll_token_endpoint(quick, "test.com", "test") == ("abc", None, 60)
    assert post.call_count == 1


@patch("tokensmith.token_client.requests.Session")
def test_device_code_responses_compare_by_their_fields_as_the_seeds_did(mock_session: MagicMock) -> None:
    """The seed's ``DeviceCodeResponse`` is a dataclass compared by its five fields, and test suites assert
    ``get_device_code(...) == DeviceCodeResponse(...)``. When the answer arrived is not part of the value."""
    body = {"device_code": "code", "user_code": "BNDJJFXL", "verification_uri": "url", "expires_in": 600, "interval": 5}
    mock_session.return_value.post.return_value = _response(True, body)
    first = tc.get_device_code("https://idp.example/device", "test")
    second = tc.get_device_code("https://idp.example/device", "test")
    assert first == tc.DeviceCodeResponse("code", "BNDJJFXL", "url", 600, 5)
    assert first == second == tc.DeviceCodeResponse.from_json_response(body)
    assert hash(first) == hash(second)
    assert first != tc.DeviceCodeResponse("other", "BNDJJFXL", "url", 600, 5)


@patch("tokensmith.token_client.requests")
def test_patched_requests_module_still_works(mock_requests: MagicMock) -> None:
    mock_requests.Session.return_value.post.return_value = _response(True, {"access_token": "abc"})
    assert tc.get_token("https://corp.idp.net", client_id="x") == ("abc", None, None)  # C6: expires_in optional


@patch("tokensmith.token_client.requests.Session")
def test_pending_and_slow_down_raise_authentication_pending(mock_session: MagicMock) -> None:
    for code, cls in (("authorization_pending", exc.AuthorizationPending), ("slow_down", exc.SlowDown)):
        mock_session.return_value.post.return_value = _response(False, {"error": code})
        with pytest.raises(exc.AuthenticationPending) as info:
            tc.get_token("https://corp.idp.net", grant_type=tc.GrantType.DEVICE_CODE, device_code="d", client_id="c")
        assert type(info.value) is cls and info.value.error == code


def test_a_caller_session_is_used_for_every_call() -> None:
    session = MagicMock()
    session.post.return_value = _response(True, {"access_token": "abc", "token_type": "bearer"})
    tc.get_token("https://idp.example/token", client_id="c", session=session)
    tc.get_token(
        "https://idp.example/token",
        client_id="c",
        session=session,
        http_proxy_url="http://proxy:3128",
        verify="/etc/ca.pem",
    )
    assert session.post.call_count == 2
    kwargs = session.post.call_args.kwargs
    assert kwargs["proxies"] == {"https": "http://proxy:3128", "http": "http://proxy:3128"}
    assert kwargs["verify"] == "/etc/ca.pem"


def test_flytekit_own_grant_type_and_device_code_response_are_accepted() -> None:
    """Code that imported flytekit's ``GrantType``/``DeviceCodeResponse`` before the bridge was installed (or
    never installs it) hands flytekit's objects to our functions. flytekit's ``GrantType`` is a ``str`` enum whose
    ``str()`` is ``'GrantType.REFRESH_TOKEN'``: it must be sent by value, as the seed sent ``grant_type.value``;
    flytekit's ``DeviceCodeResponse`` has only the seed's five fields, and polling must still work with it."""
    # Imported before patching: flytekit's import chain subclasses requests.Session.
    flytekit_tc = pytest.importorskip("flytekit.clients.auth.token_client")
    if flytekit_tc is tc:
        pytest.skip("the flytekit bridge is installed in this interpreter")
    theirs = flytekit_tc.DeviceCodeResponse(
        device_code="x", user_code="y", verification_uri="v", expires_in=5, interval=0
    )
    with patch("tokensmith.token_client.requests.Session") as mock_session:
        post = mock_session.return_value.post
        post.return_value = _response(True, {"access_token": "abc", "expires_in": 60})
        tc.get_token(
            "https://idp.example/token",
            client_id="c",
            grant_type=flytekit_tc.GrantType.REFRESH_TOKEN,
            refresh_token="r",
        )
        assert post.call_args.kwargs["data"]["grant_type"] == "refresh_token"

        post.reset_mock()
        assert tc.poll_token_endpoint(theirs, "https://idp.example/token", "c") == ("abc", None, 60)
    assert post.call_count == 1
    form = post.call_args.kwargs["data"]
    assert (form["grant_type"], form["device_code"]) == (tc.GrantType.DEVICE_CODE.value, "x")
