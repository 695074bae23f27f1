"""The authorization code grant with PKCE on a loopback redirect (RFC 6749 §4.1, RFC 7636, RFC 8252, RFC 9207).

Sans-IO: the authorization URL is built from caller-supplied random octets, the redirect (a full URL, or just its
query as a person may paste it) is checked and parsed, and the code exchange is an ``HttpRequest`` like every other
token request. The driver (``tokensmith.browser``) owns the listener, the browser and the clock.

Secrets here: the code, the PKCE verifier, the ``state`` and the ``nonce``. None of them is ever part of a
``repr`` or an exception message; a server's ``error_description`` is scrubbed of them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._redact import redact
from ..exceptions import (
    InvalidEndpointError,
    InvalidResponse,
    IssuerMismatch,
    StateMismatch,
    error_class_for,
)
from .client_auth import ClientAuth
from .errors import _clean_text
from .messages import HttpRequest
from .params import ScopeInput, add_param, normalize_scope
from .pkce import VERIFIER_OCTETS, Pkce, b64url
from .token import GrantType, token_request
from .urls import check_endpoint, has_invisible_characters

#: Random octets for one login: the PKCE verifier, the ``state`` and the ``nonce``, 32 (256 bits) each.
LOGIN_OCTETS = 3 * VERIFIER_OCTETS
#: The path of the default redirect URI, ``http://127.0.0.1:<free port>/callback``.
DEFAULT_CALLBACK_PATH = "/callback"
#: Parameters the flow sets itself; ``extra_params`` may not override them. ``response_mode`` is fixed too: the
#: loopback listener reads the query (a ``form_post`` or ``fragment`` answer would never reach it).
PROTOCOL_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
        "prompt",
        "login_hint",
        "audience",
        "resource",
    }
)
_STATE_MISMATCH = (
    "the redirect's state {what} (RFC 6749 §10.12): it does not answer this login (forged, stale or another "
    "login's) and was refused"
)


@dataclass(frozen=True)
class LoginSecrets:
    """The one-time values of one authorization request: PKCE, ``state`` (CSRF, RFC 9700 §2.1) and ``nonce``
    (OpenID Connect; sent only when ``openid`` is requested)."""

    pkce: Pkce = field(repr=False)
    state: str = field(repr=False)
    nonce: str = field(repr=False)

    @classmethod
    def from_random(cls, octets: bytes) -> LoginSecrets:
        """From ``LOGIN_OCTETS`` (96) fresh random bytes: 32 each for the verifier, the state and the nonce."""
        if not isinstance(octets, bytes) or len(octets) != LOGIN_OCTETS:
            raise ValueError(f"a login needs exactly {LOGIN_OCTETS} random octets")
        third = VERIFIER_OCTETS
        return cls(Pkce.from_random(octets[:third]), b64url(octets[third : 2 * third]), b64url(octets[2 * third :]))

    def __repr__(self) -> str:
        return f"LoginSecrets(pkce={self.pkce!r}, state={redact(self.state)}, nonce={redact(self.nonce)})"


@dataclass(frozen=True)
class LoopbackRedirect:
    """A loopback redirect URI (RFC 8252 §7.3) taken apart: where to listen and what to send.

    ``port`` None means "any free port": the URI sent is ``uri_for(port)`` once the listener has one. A URI with
    a port is sent exactly as given (servers that match redirect URIs exactly, such as Okta, need that)."""

    uri: str
    host: str
    port: int | None
    path: str

    @property
    def bind_hosts(self) -> tuple[str, ...]:
        """The addresses to listen on: the literal, or both loopbacks for ``localhost`` (a browser may resolve it to
        either; RFC 8252 §8.3 is why ``localhost`` is not the default)."""
        if self.host == "localhost":
            return ("127.0.0.1", "::1")
        return (self.host,)

    def uri_for(self, port: int) -> str:
        """The redirect URI to send once listening on ``port``."""
        if self.port is not None:
            return self.uri
        host = f"[{self.host}]" if ":" in self.host else self.host
        return urlunsplit(("http", f"{host}:{port}", self.path, "", ""))


def parse_loopback_redirect_uri(uri: str | None) -> LoopbackRedirect:
    """Check a redirect URI the loopback listener can serve: ``http`` (a listener has no certificate), a loopback
    IP literal (127.0.0.0/8 or ``[::1]``) or ``localhost``, an optional port, a path, and nothing else (no user
    info, query or fragment). None means the RFC 8252 default, ``http://127.0.0.1:<free port>/callback``."""
    if uri is None:
        return LoopbackRedirect(f"http://127.0.0.1{DEFAULT_CALLBACK_PATH}", "127.0.0.1", None, DEFAULT_CALLBACK_PATH)
    if not isinstance(uri, str) or has_invisible_characters(uri):
        raise InvalidEndpointError("redirect_uri must be a URL without whitespace or invisible characters")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise InvalidEndpointError(f"redirect_uri {uri[:200]!r} cannot be parsed") from None
    if parts.scheme.lower() != "http":
        raise InvalidEndpointError(
            f"redirect_uri {uri[:200]!r}: the loopback listener serves http:// only "
            "(http://127.0.0.1:<port>/<path>, http://[::1]:<port>/<path> or http://localhost:<port>/<path>)"
        )
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment or "#" in uri:
        raise InvalidEndpointError(f"redirect_uri {uri[:200]!r}: no user name, query or fragment allowed")
    if host != "localhost":
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is None or not literal.is_loopback:
            raise InvalidEndpointError(
                f"redirect_uri {uri[:200]!r}: the host must be a loopback address (127.0.0.1, [::1]) or localhost "
                "(RFC 8252 §7.3, §8.3); the listener never binds anything else"
            )
        host = str(literal)
    path = parts.path or "/"
    return LoopbackRedirect(uri, host, port or None, path)


def check_authorization_endpoint(url: str) -> str:
    """The authorization endpoint the person's browser is sent to: ``https``, or ``http`` to a loopback host only
    (C24, RFC 9700 §2.6). There is no opt-out: the page takes the person's password. No user info, no fragment
    (RFC 6749 §3.1); a query is kept (§3.1 allows one)."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidEndpointError("the authorization endpoint must be an absolute https:// URL")
    check_endpoint(url, allow_insecure=False)
    parts = urlsplit(url)
    if parts.fragment or "#" in url:
        raise InvalidEndpointError("the authorization endpoint must not have a fragment (RFC 6749 §3.1)")
    return url


@dataclass(frozen=True)
class AuthorizationRequest:
    """What the browser is sent to, and what the redirect must answer. ``url`` carries the ``state``, so it is
    shown to the person (who needs it) but never logged or put in a ``repr``."""

    url: str = field(repr=False)
    redirect_uri: str
    secrets: LoginSecrets = field(repr=False)
    #: Whether a ``nonce`` was sent (``openid`` requested); the ID token must then carry it.
    nonce_sent: bool = False

    @property
    def state(self) -> str:
        return self.secrets.state

    @property
    def nonce(self) -> str | None:
        return self.secrets.nonce if self.nonce_sent else None


def authorization_request(
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    secrets: LoginSecrets,
    *,
    scope: ScopeInput = None,
    audience: str | None = None,
    resource: str | Iterable[str] | None = None,
    prompt: str | None = None,
    login_hint: str | None = None,
    extra_params: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> AuthorizationRequest:
    """The authorization request URL (RFC 6749 §4.1.1): ``response_type=code``, ``client_id``, ``redirect_uri``,
    ``scope``, a fresh ``state``, PKCE ``S256`` always (C19, C20), ``nonce`` when ``openid`` is requested (OpenID
    Connect Core §3.1.2.1; some servers refuse a nonce without it), then ``audience`` (Auth0), RFC 8707
    ``resource`` (may repeat), ``prompt`` and ``login_hint`` passed through, then ``extra_params`` (which may not
    set any of the above). Empty values are left out. The endpoint's own query is kept (§3.1)."""
    check_authorization_endpoint(authorization_endpoint)
    if not client_id:
        raise ValueError("an authorization request needs a client_id")
    scope_value = normalize_scope(scope)
    nonce_sent = scope_value is not None and "openid" in scope_value.split(" ")
    form: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
    ]
    add_param(form, "scope", scope_value)
    form += [
        ("state", secrets.state),
        ("code_challenge", secrets.pkce.challenge),
        ("code_challenge_method", secrets.pkce.method),
    ]
    if nonce_sent:
        form.append(("nonce", secrets.nonce))
    add_param(form, "audience", audience)
    add_param(form, "resource", resource)
    add_param(form, "prompt", prompt)
    add_param(form, "login_hint", login_hint)
    extras = list(extra_params.items() if isinstance(extra_params, Mapping) else extra_params or ())
    for name, value in extras:
        if name in PROTOCOL_PARAMS:
            raise ValueError(f"extra_params may not set {name!r}: the flow sets it (pass it by its own argument)")
        add_param(form, name, value)
    parts = urlsplit(authorization_endpoint)
    existing = parse_qsl(parts.query, keep_blank_values=True)
    clash = {name for name, _ in existing} & {name for name, _ in form}
    if clash:
        raise InvalidEndpointError(
            f"the authorization endpoint's own query already sets {sorted(clash)} (RFC 6749 §3.1: no repeats)"
        )
    query = "&".join(q for q in (parts.query, urlencode(form)) if q)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return AuthorizationRequest(url=url, redirect_uri=redirect_uri, secrets=secrets, nonce_sent=nonce_sent)


# --- the redirect ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizationResponse:
    """A redirect that answers this login with a code (RFC 6749 §4.1.2)."""

    code: str = field(repr=False)
    #: The RFC 9207 ``iss`` parameter, when the server sent one.
    iss: str | None = None

    def __repr__(self) -> str:
        return f"AuthorizationResponse(code={redact(self.code)}, iss={self.iss!r})"


def redirect_params(text: str) -> list[tuple[str, str]]:
    """The parameters of a redirect given as a full URL (``http://127.0.0.1:8400/callback?code=...``) or as its query
    alone, with or without the ``?`` (what a person pastes). Surrounding whitespace and quotes are ignored; so is
    a fragment, unless the answer is in it (``#code=...&state=...``, response_mode=fragment)."""
    text = text.strip().strip("'\"<>").strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
        except ValueError:
            return []
        query, fragment = parts.query, parts.fragment
    else:
        query, _, fragment = (text[1:] if text.startswith("?") else text).partition("#")
    params = parse_qsl(query, keep_blank_values=True)
    if not any(name in _RESPONSE_PARAMS for name, _ in params):
        # A server that answered in the fragment (response_mode=fragment): the browser shows it after "#". A
        # fragment a site appends to a query answer (Facebook's "#_=_") is left out.
        in_fragment = parse_qsl(fragment, keep_blank_values=True)
        if any(name in _RESPONSE_PARAMS for name, _ in in_fragment):
            return in_fragment
    return params


#: The parameters that make a text an authorization response (RFC 6749 §4.1.2, §4.1.2.1).
_RESPONSE_PARAMS = frozenset({"state", "code", "error"})


def _single(params: list[tuple[str, str]], name: str) -> tuple[str | None, int]:
    values = [value for key, value in params if key == name]
    return (values[0] if values else None), len(values)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def parse_authorization_response(
    redirect: str,
    *,
    state: str,
    issuer: str | None = None,
    iss_required: bool = False,
) -> AuthorizationResponse:
    """Check and parse the redirect (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207), in this order:

    1. ``state`` present once and equal to ours (constant-time), else ``StateMismatch``: the redirect does not
       answer this login, and a listener refuses it and goes on waiting;
    2. ``iss`` (RFC 9207 §2.4, simple string comparison): with ``issuer`` known, a present ``iss`` must equal it,
       and must be present when ``iss_required`` (the server advertises
       ``authorization_response_iss_parameter_supported``), else ``IssuerMismatch``. Checked for error responses
       too, before anything in them is believed;
    3. ``error``: its RFC 6749 §4.1.2.1 / OpenID Connect class (``AccessDenied``, ``InteractionRequired``, ...),
       with ``error_description`` and ``error_uri`` cleaned and scrubbed of the code and state;
    4. ``code``: present once, 1*VSCHAR (RFC 6749 App. A), else ``InvalidResponse``.
    """
    if iss_required and issuer is None:
        raise ValueError("iss_required needs the expected issuer")
    params = redirect_params(redirect)
    given_state, count = _single(params, "state")
    if count == 0 or not given_state:
        raise StateMismatch(_STATE_MISMATCH.format(what="is missing"))
    if count > 1:
        raise StateMismatch(_STATE_MISMATCH.format(what="is repeated"))
    if not _same(given_state, state):
        raise StateMismatch(_STATE_MISMATCH.format(what="is not this login's"))
    code, code_count = _single(params, "code")
    secrets = tuple(s for s in (state, code) if s)
    iss, iss_count = _single(params, "iss")
    if iss_count > 1:
        raise IssuerMismatch("the redirect repeats the iss parameter (RFC 9207); the response was not used")
    if issuer is not None:
        if iss is None and iss_required:
            raise IssuerMismatch(
                f"the redirect has no iss parameter although {issuer} advertises "
                "authorization_response_iss_parameter_supported (RFC 9207 §2.4); the response was not used"
            )
        if iss is not None and iss != issuer:
            shown = _clean_text(iss, secrets) or ""
            raise IssuerMismatch(
                f"the redirect comes from issuer {shown[:200]!r}, not {issuer!r} (RFC 9207 §2.4: a mix-up attack, "
                "or a misconfigured issuer); the response was not used"
            )
    error, _ = _single(params, "error")
    if error:
        code_text = (_clean_text(error, secrets) or "invalid_request")[:100]
        cls = error_class_for(code_text)
        description, _ = _single(params, "error_description")
        uri, _ = _single(params, "error_uri")
        raise cls(code_text, _clean_text(description, secrets), _clean_text(uri, secrets))
    if code_count != 1 or not code:
        what = "no code" if code_count == 0 or not code else "the code more than once"
        raise InvalidResponse(f"the authorization response has {what} and no error (RFC 6749 §4.1.2)")
    if not all(" " <= ch <= "~" for ch in code):
        raise InvalidResponse("the authorization code is not 1*VSCHAR (RFC 6749 Appendix A)")
    return AuthorizationResponse(code=code, iss=iss)


def authorization_code_token_request(
    token_endpoint: str,
    auth: ClientAuth,
    code: str,
    *,
    redirect_uri: str,
    code_verifier: str,
    resource: str | Iterable[str] | None = None,
    params: Iterable[tuple[str, str | Iterable[str] | None]] = (),
) -> HttpRequest:
    """The code exchange (RFC 6749 §4.1.3, RFC 7636 §4.5): ``grant_type=authorization_code``, ``code``, the
    ``redirect_uri`` sent in the authorization request, the PKCE ``code_verifier``, client authentication as
    usual (a public client sends its ``client_id``), RFC 8707 ``resource`` when given. The code and the verifier
    are request secrets, scrubbed from any error the server echoes."""
    return token_request(
        token_endpoint,
        GrantType.AUTHORIZATION_CODE,
        auth,
        params=[
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
            ("resource", resource),
            *params,
        ],
    )


def check_id_token_nonce(id_token: str | None, nonce: str | None) -> None:
    """OpenID Connect Core §3.1.3.7 (11): an ID token answering a request with a ``nonce`` carries the same one.
    Only the claim is compared (the signature is not verified: tokensmith does not use the ID token for identity,
    and PKCE already binds the code to this client). An ID token that cannot be read as a JWS, or has no
    ``nonce``, is left alone; a different ``nonce`` raises ``InvalidResponse``."""
    if not id_token or nonce is None:
        return
    parts = id_token.split(".")
    if len(parts) != 3:
        return  # encrypted (JWE) or not a JWT: nothing we can read
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return
    claim = payload.get("nonce") if isinstance(payload, dict) else None
    if isinstance(claim, str) and not _same(claim, nonce):
        raise InvalidResponse(
            "the ID token's nonce is not the one this login sent (OpenID Connect Core §3.1.3.7); token refused"
        )
