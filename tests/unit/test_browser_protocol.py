"""The sans-IO half of the browser login (issue 9): PKCE (C19, C20), the authorization URL (C24), the redirect
(state, RFC 9207 iss, error mapping), the code exchange and the metadata fields it needs."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tokensmith
from tokensmith._protocol.authorization import (
    LOGIN_OCTETS,
    AuthorizationResponse,
    LoginSecrets,
    authorization_code_token_request,
    authorization_request,
    check_authorization_endpoint,
    check_id_token_nonce,
    parse_authorization_response,
    parse_loopback_redirect_uri,
    redirect_params,
)
from tokensmith._protocol.client_auth import ClientSecretBasic, NoClientAuth
from tokensmith._protocol.discovery import parse_metadata
from tokensmith._protocol.messages import HttpResponse
from tokensmith._protocol.pkce import Pkce, s256_challenge

AUTH = "https://idp.example/authorize"
REDIRECT = "http://127.0.0.1:8400/callback"
ISSUER = "https://idp.example"
UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]+")


def secrets(seed: int = 1) -> LoginSecrets:
    return LoginSecrets.from_random(bytes((seed + i) % 256 for i in range(LOGIN_OCTETS)))


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# --- PKCE (RFC 7636) ------------------------------------------------------------------------------------------------


def test_rfc7636_appendix_b_vector() -> None:
    """RFC 7636 Appendix B: these 32 octets give this verifier and this S256 challenge."""
    octets = bytes([116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
                    22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121])  # fmt: skip
    pkce = Pkce.from_random(octets)
    assert pkce.verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert s256_challenge(pkce.verifier) == pkce.challenge


def test_32_random_octets_give_a_43_character_unreserved_verifier() -> None:
    octets = bytes(range(32))
    pkce = Pkce.from_random(octets)
    assert len(pkce.verifier) == 43 and UNRESERVED.fullmatch(pkce.verifier)
    assert pkce.verifier == base64.urlsafe_b64encode(octets).rstrip(b"=").decode()
    assert pkce.method == "S256"
    assert pkce.challenge == s256_challenge(pkce.verifier)
    assert pkce.verifier not in repr(pkce)


@pytest.mark.parametrize("octets", [b"", bytes(31), bytes(97)])
def test_too_little_or_too_much_entropy_is_refused(octets: bytes) -> None:
    with pytest.raises(ValueError):
        Pkce.from_random(octets)


@pytest.mark.parametrize("verifier", ["short", "a" * 42, "a" * 129, "a" * 42 + "!", "a" * 42 + "é"])
def test_verifier_syntax_is_checked(verifier: str) -> None:
    with pytest.raises(ValueError):
        s256_challenge(verifier)


def test_login_secrets_are_three_independent_values_from_96_octets() -> None:
    s = secrets()
    assert len({s.pkce.verifier, s.state, s.nonce}) == 3
    assert all(len(v) == 43 for v in (s.pkce.verifier, s.state, s.nonce))
    for value in (s.pkce.verifier, s.state, s.nonce):
        assert value not in repr(s)
    with pytest.raises(ValueError):
        LoginSecrets.from_random(bytes(LOGIN_OCTETS - 1))


# --- the authorization request --------------------------------------------------------------------------------------


def test_authorization_url_carries_pkce_s256_state_and_no_nonce_without_openid() -> None:
    s = secrets()
    request = authorization_request(AUTH, "cli", REDIRECT, s, scope=["offline", "all"])
    q = query(request.url)
    assert request.url.startswith(AUTH + "?")
    assert q == {
        "response_type": ["code"],
        "client_id": ["cli"],
        "redirect_uri": [REDIRECT],
        "scope": ["offline all"],
        "state": [s.state],
        "code_challenge": [s.pkce.challenge],
        "code_challenge_method": ["S256"],
    }
    assert request.nonce is None and request.state == s.state
    assert s.pkce.verifier not in request.url  # the verifier only ever goes to the token endpoint
    assert s.state not in repr(request) and "code_challenge" not in repr(request)


def test_nonce_when_openid_is_requested_and_pass_through_parameters() -> None:
    s = secrets()
    request = authorization_request(
        AUTH,
        "cli",
        REDIRECT,
        s,
        scope="openid offline_access",
        audience="https://api.example",
        resource=["https://a.example/", "https://b.example/"],
        prompt="consent",
        login_hint="alice@example.com",
        extra_params={"acr_values": "mfa", "empty": ""},
    )
    q = query(request.url)
    assert q["nonce"] == [s.nonce] and request.nonce == s.nonce
    assert q["audience"] == ["https://api.example"]
    assert q["resource"] == ["https://a.example/", "https://b.example/"]
    assert q["prompt"] == ["consent"] and q["login_hint"] == ["alice@example.com"]
    assert q["acr_values"] == ["mfa"] and "empty" not in q  # empty means omitted (C3)
    assert "plain" not in request.url


def test_each_login_gets_fresh_values() -> None:
    a = authorization_request(AUTH, "cli", REDIRECT, secrets(1), scope="openid")
    b = authorization_request(AUTH, "cli", REDIRECT, secrets(2), scope="openid")
    for name in ("state", "code_challenge", "nonce"):
        assert query(a.url)[name] != query(b.url)[name]


@pytest.mark.parametrize("name", ["state", "code_challenge_method", "redirect_uri", "response_mode", "nonce"])
def test_extra_params_cannot_override_the_protocol(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        authorization_request(AUTH, "cli", REDIRECT, secrets(), extra_params={name: "x"})


def test_the_endpoints_own_query_is_kept_but_not_repeated() -> None:
    request = authorization_request(AUTH + "?tenant=t1", "cli", REDIRECT, secrets())
    assert parse_qsl(urlsplit(request.url).query)[0] == ("tenant", "t1")
    with pytest.raises(tokensmith.InvalidEndpointError, match="client_id"):
        authorization_request(AUTH + "?client_id=other", "cli", REDIRECT, secrets())


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://idp.example/authorize", tokensmith.InsecureEndpointError),
        ("javascript://alert(1)", tokensmith.InvalidEndpointError),
        ("file:///etc/passwd", tokensmith.InvalidEndpointError),
        ("idp.example/authorize", tokensmith.InvalidEndpointError),
        ("https://user:pw@idp.example/authorize", tokensmith.InvalidEndpointError),
        ("https://idp.example/authorize#frag", tokensmith.InvalidEndpointError),
        ("https://idp.example/author ize", tokensmith.InvalidEndpointError),
    ],
)
def test_non_https_authorization_endpoints_are_refused_except_loopback(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        authorization_request(url, "cli", REDIRECT, secrets())


@pytest.mark.parametrize("url", ["https://idp.example/a", "http://127.0.0.1:9400/auth", "http://[::1]/auth"])
def test_https_and_loopback_http_authorization_endpoints_pass(url: str) -> None:
    assert check_authorization_endpoint(url) == url


# --- the loopback redirect URI (RFC 8252 §7.3) ----------------------------------------------------------------------


def test_default_redirect_is_127001_on_any_port_with_path_callback() -> None:
    redirect = parse_loopback_redirect_uri(None)
    assert (redirect.host, redirect.port, redirect.path) == ("127.0.0.1", None, "/callback")
    assert redirect.uri_for(50123) == "http://127.0.0.1:50123/callback"
    assert redirect.bind_hosts == ("127.0.0.1",)


def test_a_fixed_redirect_uri_is_sent_exactly_as_given() -> None:
    redirect = parse_loopback_redirect_uri("http://localhost:53593/callback")
    assert (redirect.host, redirect.port, redirect.path) == ("localhost", 53593, "/callback")
    assert redirect.uri_for(53593) == "http://localhost:53593/callback"
    assert redirect.bind_hosts == ("127.0.0.1", "::1")


def test_ipv6_loopback_without_port_gets_one() -> None:
    redirect = parse_loopback_redirect_uri("http://[::1]/cb")
    assert (redirect.host, redirect.port) == ("::1", None)
    assert redirect.uri_for(40000) == "http://[::1]:40000/cb"


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1:8400/callback",  # the listener has no certificate
        "http://example.com:8400/callback",
        "http://10.0.0.1:8400/callback",
        "http://0.0.0.0:8400/callback",
        "http://127.0.0.1:8400/callback?x=1",
        "http://127.0.0.1:8400/callback#x",
        "http://u:p@127.0.0.1:8400/callback",
        "myapp:/callback",
        "http://127.0.0.1:99999/callback",
    ],
)
def test_redirect_uris_the_listener_cannot_serve_are_refused(uri: str) -> None:
    with pytest.raises(tokensmith.InvalidEndpointError):
        parse_loopback_redirect_uri(uri)


# --- the redirect ---------------------------------------------------------------------------------------------------


def redirect(**params: str) -> str:
    return REDIRECT + "?" + urlencode(params)


def test_a_good_redirect_yields_the_code_as_url_or_pasted_query() -> None:
    s = secrets()
    for text in (
        redirect(code="abc", state=s.state, iss=ISSUER),
        "  " + redirect(code="abc", state=s.state, iss=ISSUER) + "\n",
        "?" + urlencode({"code": "abc", "state": s.state, "iss": ISSUER}),
        urlencode({"code": "abc", "state": s.state, "iss": ISSUER}),
        f"'{redirect(code='abc', state=s.state, iss=ISSUER)}'",
    ):
        response = parse_authorization_response(text, state=s.state, issuer=ISSUER, iss_required=True)
        assert response == AuthorizationResponse(code="abc", iss=ISSUER)
        assert "abc" not in repr(response)


@pytest.mark.parametrize(
    "params",
    [
        {"code": "abc"},
        {"code": "abc", "state": ""},
        {"code": "abc", "state": "someone-elses-state-value"},
        {"error": "access_denied"},  # an error must answer this login too
    ],
)
def test_missing_or_wrong_state_is_a_state_mismatch(params: dict[str, str]) -> None:
    s = secrets()
    with pytest.raises(tokensmith.StateMismatch) as caught:
        parse_authorization_response(redirect(**params), state=s.state)
    assert s.state not in str(caught.value) and "abc" not in str(caught.value)
    assert "someone-elses" not in str(caught.value)


def test_repeated_state_is_refused() -> None:
    s = secrets()
    text = f"{REDIRECT}?code=abc&state={s.state}&state=evil"
    with pytest.raises(tokensmith.StateMismatch, match="repeated"):
        parse_authorization_response(text, state=s.state)


def test_iss_must_match_the_issuer_rfc9207() -> None:
    s = secrets()
    with pytest.raises(tokensmith.IssuerMismatch, match=r"https://evil\.example"):
        parse_authorization_response(
            redirect(code="abc", state=s.state, iss="https://evil.example"), state=s.state, issuer=ISSUER
        )
    # Advertised (authorization_response_iss_parameter_supported): a missing iss is refused.
    with pytest.raises(tokensmith.IssuerMismatch, match="no iss"):
        parse_authorization_response(
            redirect(code="abc", state=s.state), state=s.state, issuer=ISSUER, iss_required=True
        )
    # Not advertised: a missing iss is accepted, a wrong one still is not.
    assert parse_authorization_response(redirect(code="abc", state=s.state), state=s.state, issuer=ISSUER).code == "abc"
    # No issuer known: iss cannot be checked (and requiring it is a programming error).
    assert parse_authorization_response(redirect(code="abc", state=s.state, iss="x"), state=s.state).iss == "x"
    with pytest.raises(ValueError):
        parse_authorization_response(redirect(code="abc", state=s.state), state=s.state, iss_required=True)


def test_iss_is_checked_before_an_error_is_believed() -> None:
    s = secrets()
    with pytest.raises(tokensmith.IssuerMismatch):
        parse_authorization_response(
            redirect(error="access_denied", state=s.state, iss="https://evil.example"), state=s.state, issuer=ISSUER
        )


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ("access_denied", tokensmith.AccessDenied),
        ("invalid_request", tokensmith.InvalidRequest),
        ("unauthorized_client", tokensmith.UnauthorizedClient),
        ("unsupported_response_type", tokensmith.UnsupportedResponseType),
        ("invalid_scope", tokensmith.InvalidScope),
        ("server_error", tokensmith.ServerError),
        ("temporarily_unavailable", tokensmith.TemporarilyUnavailable),
        ("login_required", tokensmith.InteractionRequired),
        ("consent_required", tokensmith.InteractionRequired),
        ("interaction_required", tokensmith.InteractionRequired),
        ("account_selection_required", tokensmith.InteractionRequired),
        ("invalid_target", tokensmith.InvalidTarget),
        ("vendor_specific", tokensmith.OAuthError),
    ],
)
def test_error_redirects_map_to_typed_errors(error: str, cls: type[tokensmith.OAuthError]) -> None:
    s = secrets()
    with pytest.raises(cls) as caught:
        parse_authorization_response(
            redirect(
                error=error,
                error_description="The user said no",
                error_uri="https://idp.example/e",
                state=s.state,
                iss=ISSUER,
            ),
            state=s.state,
            issuer=ISSUER,
            iss_required=True,
        )
    exc = caught.value
    assert type(exc) is cls
    assert (exc.error, exc.error_description, exc.error_uri) == (error, "The user said no", "https://idp.example/e")
    assert isinstance(exc, tokensmith.AuthenticationError)
    assert exc.transient is (error in ("server_error", "temporarily_unavailable"))


def test_error_description_is_scrubbed_of_the_state_and_cleaned() -> None:
    s = secrets()
    text = redirect(error="access_denied", error_description=f"bad state {s.state}\x1b[31m", state=s.state)
    with pytest.raises(tokensmith.AccessDenied) as caught:
        parse_authorization_response(text, state=s.state)
    assert s.state not in str(caught.value) and "\x1b" not in str(caught.value)


@pytest.mark.parametrize("extra", ["", "&code=abc&code=def", "&code=", "&code=a%0Ab"])
def test_a_matching_redirect_without_a_usable_code_is_an_invalid_response(extra: str) -> None:
    s = secrets()
    with pytest.raises(tokensmith.InvalidResponse) as caught:
        parse_authorization_response(f"{REDIRECT}?state={s.state}{extra}", state=s.state)
    assert "abc" not in str(caught.value) and s.state not in str(caught.value)


def test_redirect_params_accepts_url_query_and_garbage() -> None:
    assert redirect_params("http://127.0.0.1:1/cb?a=1&b=2") == [("a", "1"), ("b", "2")]
    assert redirect_params("?a=1") == [("a", "1")]
    assert redirect_params("a=1") == [("a", "1")]
    assert redirect_params("") == []
    assert redirect_params("http://[::1/cb?a=1") == []  # unparsable URL


@given(st.text(max_size=300))
def test_any_text_yields_a_code_or_a_typed_error(text: str) -> None:
    s = secrets()
    with contextlib.suppress(tokensmith.TokensmithError):
        parse_authorization_response(text, state=s.state, issuer=ISSUER, iss_required=True)


@given(st.dictionaries(st.sampled_from(["code", "error", "iss", "error_description", "x"]), st.text(max_size=40)))
def test_any_redirect_with_our_state_yields_a_code_or_a_typed_error(params: dict[str, str]) -> None:
    s = secrets()
    with contextlib.suppress(tokensmith.OAuthError, tokensmith.InvalidResponse, tokensmith.IssuerMismatch):
        parse_authorization_response(redirect(state=s.state, **params), state=s.state, issuer=ISSUER)


# --- the code exchange ----------------------------------------------------------------------------------------------


def test_code_exchange_for_a_public_client() -> None:
    s = secrets()
    request = authorization_code_token_request(
        "https://idp.example/token",
        NoClientAuth("cli"),
        "the-code",
        redirect_uri=REDIRECT,
        code_verifier=s.pkce.verifier,
    )
    assert request.form == [
        ("grant_type", "authorization_code"),
        ("client_id", "cli"),
        ("code", "the-code"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", s.pkce.verifier),
    ]
    assert "Authorization" not in request.headers
    assert {"the-code", s.pkce.verifier} <= set(request.secrets)
    assert "the-code" not in repr(request) and s.pkce.verifier not in repr(request)


def test_code_exchange_for_a_confidential_client_with_resource() -> None:
    s = secrets()
    request = authorization_code_token_request(
        "https://idp.example/token",
        ClientSecretBasic("cli", "sec"),
        "the-code",
        redirect_uri=REDIRECT,
        code_verifier=s.pkce.verifier,
        resource="https://api.example/",
    )
    assert request.headers["Authorization"].startswith("Basic ")
    names = [name for name, _ in request.form]
    assert names == ["grant_type", "code", "redirect_uri", "code_verifier", "resource"]
    assert "client_secret" not in names  # one authentication method (C2)


def _jwt(payload: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256'})}.{part(payload)}.c2ln"


def test_id_token_nonce_must_match_when_present() -> None:
    check_id_token_nonce(_jwt({"nonce": "n1"}), "n1")
    check_id_token_nonce(_jwt({"sub": "a"}), "n1")  # no nonce claim: not checked
    check_id_token_nonce("a.b.c.d.e", "n1")  # JWE: unreadable
    check_id_token_nonce("not-a-jwt", "n1")
    check_id_token_nonce("a.!!!.c", "n1")
    check_id_token_nonce(_jwt({"nonce": "other"}), None)  # no nonce sent
    check_id_token_nonce(None, "n1")
    with pytest.raises(tokensmith.InvalidResponse, match="nonce") as caught:
        check_id_token_nonce(_jwt({"nonce": "other"}), "n1")
    assert "other" not in str(caught.value)


# --- discovery ------------------------------------------------------------------------------------------------------


def _metadata(doc: dict[str, object]) -> HttpResponse:
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(doc).encode())


def test_metadata_exposes_the_authorization_endpoint_and_the_iss_flag() -> None:
    base = {"issuer": ISSUER, "token_endpoint": ISSUER + "/token"}
    meta = parse_metadata(_metadata(base), ISSUER)
    assert meta.authorization_endpoint is None and meta.authorization_response_iss_parameter_supported is False
    meta = parse_metadata(
        _metadata(
            {**base, "authorization_endpoint": ISSUER + "/auth", "authorization_response_iss_parameter_supported": True}
        ),
        ISSUER,
    )
    assert meta.authorization_endpoint == ISSUER + "/auth"
    assert meta.authorization_response_iss_parameter_supported is True
    # Odd values never break discovery for the other grants.
    meta = parse_metadata(
        _metadata({**base, "authorization_endpoint": 7, "authorization_response_iss_parameter_supported": "yes"}),
        ISSUER,
    )
    assert meta.authorization_endpoint is None and meta.authorization_response_iss_parameter_supported is False


@pytest.mark.parametrize(
    "pasted",
    [
        "http://127.0.0.1:8400/callback#code=abc&state=S",  # response_mode=fragment: the answer after "#"
        "http://127.0.0.1:8400/callback?#code=abc&state=S",
        "#code=abc&state=S",
        "code=abc&state=S#_=_",  # a query answer with a fragment appended (Facebook's "#_=_")
        "?code=abc&state=S#frag",
        "http://127.0.0.1:8400/callback?code=abc&state=S#_=_",
    ],
)
def test_a_pasted_answer_with_a_fragment_is_read(pasted: str) -> None:
    """Paste mode (RFC 8252 §7.3 fallback): the address a browser shows may carry a fragment, or the whole
    answer in the fragment; the code and state are found either way, and the state is still checked."""
    assert parse_authorization_response(pasted, state="S").code == "abc"
    with pytest.raises(tokensmith.StateMismatch):
        parse_authorization_response(pasted, state="T")


def test_a_fragment_never_overrides_the_query_answer() -> None:
    with pytest.raises(tokensmith.StateMismatch):
        parse_authorization_response("http://127.0.0.1:8400/callback?code=abc&state=X#code=evil&state=S", state="S")
