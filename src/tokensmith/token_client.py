"""Drop-in replacement for ``flytekit.clients.auth.token_client``.

Same names, signatures and return values; change one import and the seed module's defects go away (see
``README.md`` → Migration): typed errors, timeouts, a pooled session, ``slow_down`` honoured, optional
``expires_in``/``interval`` handled, no redirects on POST, no ``print``. A thin adapter over the sans-IO core
in ``tokensmith._protocol`` and the one HTTP seam in ``tokensmith._transport``.

``requests`` is imported as a module attribute on purpose: test suites patch ``<this module>.requests.Session``
(or ``<this module>.requests``) and that must keep working; the objects such doubles return (``MagicMock``s
with ``.ok``, ``.status_code`` and ``.json()``) are adapted here, and only here.

Errors follow the seed's split (issue 7, A.1): the authorization server's verdicts are ``AuthenticationError``s
(``AuthenticationPending`` for "not yet"); failures that are not (network, timeouts, TLS, HTML gateway pages,
5xx without an OAuth error) are the ``requests`` exceptions the seed let through, and typed tokensmith errors too.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import json
import logging
import threading
import time
import typing
import urllib.parse
from collections.abc import Iterator, Mapping

import requests

from ._protocol.client_auth import ClientAuth, NoClientAuth, PrebuiltAuthorization
from ._protocol.device import (
    DeviceAuthorization,
    device_authorization_from_json,
    device_authorization_request,
    device_token_request,
    parse_device_authorization,
)
from ._protocol.messages import HttpRequest, HttpResponse
from ._protocol.token import GrantType, parse_token_response, token_request
from ._requests_errors import as_requests_error
from ._transport import DEFAULT_TIMEOUT, HttpSender, Timeout, Transport, pooled_session
from ._warnings import log_protocol_warnings
from .device import PollProgress, _poll
from .exceptions import AuthenticationError, AuthenticationPending, TokensmithError

__all__ = [
    "DeviceCodeResponse",
    "GrantType",
    "error_auth_pending",
    "error_slow_down",
    "get_basic_authorization_header",
    "get_device_code",
    "get_token",
    "poll_token_endpoint",
    "utf_8",
]

logger = logging.getLogger("tokensmith.token_client")

utf_8 = "utf-8"

# Errors that the token endpoint returns while the user has not finished (RFC 8628 §3.5).
error_slow_down = "slow_down"
error_auth_pending = "authorization_pending"

# Kept importable from here for callers that caught them via this module.
_ = (AuthenticationError, AuthenticationPending)

#: The real class, to tell a caller's patched ``requests.Session`` (a test double) from the library.
_REAL_SESSION = requests.Session
_warned_list_literal = threading.Event()


class DeviceCodeResponse(DeviceAuthorization):
    """Response from the device authorization endpoint (RFC 8628 §3.2).

    The seed's five fields come first, in the same order; ``interval`` now defaults to 5 (RFC 8628 §3.2) and
    ``verification_uri_complete``, ``message`` and ``raw`` are kept instead of dropped. ``device_code`` is
    hidden from ``repr``.
    """

    @classmethod
    def from_json_response(cls, j: typing.Dict[str, typing.Any]) -> DeviceCodeResponse:  # noqa: UP006
        """Validate a decoded response: ``verification_url`` accepted, string numbers coerced, a missing
        ``interval`` defaults to 5, anything unusable raises ``InvalidResponse`` (an ``AuthenticationError``)."""
        return device_authorization_from_json(j, cls=cls)


def get_basic_authorization_header(client_id: str, client_secret: str) -> str:
    """The seed module's Basic header, byte for byte: only the *secret* is form-encoded.

    RFC 6749 §2.3.1 wants both parts encoded; use ``tokensmith.ClientSecretBasic`` (encoding ``"rfc6749"``)
    for that. This function stays as it was so headers computed by existing callers do not change.
    """
    encoded = urllib.parse.quote_plus(client_secret)
    concatenated = f"{client_id}:{encoded}"
    return "Basic {}".format(base64.b64encode(concatenated.encode(utf_8)).decode(utf_8))  # noqa: UP032 - as the seed


def _transport(
    http_proxy_url: str | None, verify: bool | str | None, session: typing.Any, timeout: Timeout | None
) -> HttpSender:
    proxies = {"https": http_proxy_url, "http": http_proxy_url} if http_proxy_url else None
    if session is None:
        # One pooled session per process instead of a new one per call; but if a caller's test suite patched
        # `requests.Session` (looked up through this module's `requests`), call it on every request as the seed
        # did, so a `return_value` swapped between two calls is honoured.
        patched = requests.Session is not _REAL_SESSION
        session = requests.Session() if patched else pooled_session()
    if not isinstance(session, _REAL_SESSION):
        return _TestDoubleTransport(session, proxies=proxies, verify=verify, timeout=timeout or DEFAULT_TIMEOUT)
    return Transport(session, proxies=proxies, verify=verify, timeout=timeout or DEFAULT_TIMEOUT)


class _TestDoubleTransport:
    """Sends through a session that is not a ``requests.Session`` (a caller's ``MagicMock``) and turns what it
    returns into an ``HttpResponse``: the status from ``.status_code`` (or 200/400 from ``.ok``), the body from
    ``.json()`` re-encoded (or ``.content`` when ``.json()`` raises). The protocol core then sees bytes only."""

    def __init__(self, session: typing.Any, *, proxies: Mapping[str, str] | None, verify: typing.Any, timeout: Timeout):
        self.session = session
        self.proxies = proxies
        self.verify = verify
        self.timeout = timeout

    def post(self, request: HttpRequest) -> HttpResponse:
        raw = self.session.post(
            request.url,
            data=dict(request.form),  # a dict, as the seed passed it (users' tests read it back)
            headers={"Content-Type": "application/x-www-form-urlencoded", **request.headers},
            proxies=self.proxies,
            verify=self.verify,
            timeout=self.timeout,
            allow_redirects=False,
        )
        return _from_test_double(raw)


def _from_test_double(raw: typing.Any) -> HttpResponse:
    status = raw.status_code if type(getattr(raw, "status_code", None)) is int else None
    if status is None:
        status = 200 if getattr(raw, "ok", False) is True else 400
    try:
        obj = raw.json()
    except Exception:  # a double may raise anything: its body is then "not JSON"
        content = getattr(raw, "content", b"")
        body = content if isinstance(content, bytes) and content else b"<not JSON>"
    else:
        try:
            body = json.dumps(obj).encode()
        except (TypeError, ValueError):  # a MagicMock where a dict was expected: not a JSON object
            body = b"null"
    headers = getattr(raw, "headers", None)
    hdrs = {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {}
    return HttpResponse(status, hdrs, body, received_at=time.time())


@contextlib.contextmanager
def _seed_errors(*, device_authorization: bool = False) -> Iterator[None]:
    """Raise failures the way the seed's callers expect (see ``_requests_errors.as_requests_error``)."""
    try:
        yield
    except TokensmithError as error:
        converted = as_requests_error(error, non_ok_is_authentication_error=device_authorization)
        if converted is error:
            raise
        raise converted from error.__cause__


def _client_auth(authorization_header: str | None, client_id: str | None) -> ClientAuth:
    if authorization_header:
        return PrebuiltAuthorization(authorization_header, client_id)
    return NoClientAuth(client_id)


def _scopes(scopes: typing.Optional[typing.List[str]]) -> typing.Optional[typing.List[str]]:  # noqa: UP006, UP045
    """Scopes as given, except the one shape the seed's ``.strip("[]'")`` existed for: a Python list literal split
    on commas (flytekit's config yields ``["['offline'", " 'all']"]`` from an environment variable), which is
    sent as ``offline all`` with a one-time warning."""
    if not scopes or isinstance(scopes, str):
        return scopes
    items = [s for s in scopes if isinstance(s, str)]
    if len(items) != len(scopes) or not (items[0].strip().startswith("[") and items[-1].strip().endswith("]")):
        return scopes
    inner = ",".join(items).strip()[1:-1]
    parsed = [part.strip().strip("'\"").strip() for part in inner.split(",")]
    if not _warned_list_literal.is_set():
        _warned_list_literal.set()
        logger.warning(
            "scopes look like a Python list literal split on commas (%d items); sending them as %r. Configure "
            "scopes as a plain list or a space-separated string.",
            len(items),
            " ".join(p for p in parsed if p),
        )
    return [p for p in parsed if p]


def _grant_type_value(grant_type: GrantType | str) -> GrantType | str:
    """Another module's grant-type enum by its value. flytekit's own ``GrantType`` (still held by code that
    imported it before ``tokensmith.integrations.flytekit.install()``) is a ``str`` enum whose ``str()`` is
    ``'GrantType.REFRESH_TOKEN'``; the seed module sent ``grant_type.value``, and so do we."""
    if isinstance(grant_type, enum.Enum) and not isinstance(grant_type, GrantType):
        value: GrantType | str = grant_type.value
        return value
    return grant_type


def _device_code_response(resp: typing.Any) -> DeviceAuthorization:
    """``resp`` as a ``DeviceAuthorization``: another module's ``DeviceCodeResponse`` (flytekit's own dataclass,
    the seed's five fields) is copied into ours, which polling needs (it has ``received_monotonic``)."""
    if isinstance(resp, DeviceAuthorization):
        return resp
    return DeviceCodeResponse(resp.device_code, resp.user_code, resp.verification_uri, resp.expires_in, resp.interval)


def get_token(
    token_endpoint: str,
    scopes: typing.Optional[typing.List[str]] = None,  # noqa: UP006, UP045
    authorization_header: typing.Optional[str] = None,  # noqa: UP045
    client_id: typing.Optional[str] = None,  # noqa: UP045
    device_code: typing.Optional[str] = None,  # noqa: UP045
    audience: typing.Optional[str] = None,  # noqa: UP045
    grant_type: GrantType = GrantType.CLIENT_CREDS,
    http_proxy_url: typing.Optional[str] = None,  # noqa: UP045
    verify: typing.Optional[typing.Union[bool, str]] = None,  # noqa: UP007, UP045
    session: typing.Optional[requests.Session] = None,  # noqa: UP045
    refresh_token: typing.Optional[str] = None,  # noqa: UP045
    *,
    timeout: Timeout | None = None,
) -> typing.Tuple[str, typing.Optional[str], typing.Optional[int]]:  # noqa: UP006, UP045
    """Request a token; return ``(access_token, refresh_token or None, expires_in or None)``.

    Errors are typed: ``AuthorizationPending``/``SlowDown`` (both ``AuthenticationPending``), one class per
    RFC 6749 §5.2 code (``InvalidGrant``, ``InvalidClient``, ... all ``AuthenticationError``). Failures that are
    not the server's verdict are *not* ``AuthenticationError``s but, as in the seed module, ``requests``
    exceptions (and typed tokensmith errors too): ``requests.ConnectionError``/``ConnectError``,
    ``requests.Timeout``/``RequestTimeout``, ``requests.exceptions.SSLError``/``TLSError``, requests'
    ``JSONDecodeError``/``NonJSONResponse`` for an HTML or other non-JSON body, ``requests.HTTPError``/
    ``InvalidResponse`` for a 5xx or 429 without an OAuth error code, or with one that is no verdict on the
    credentials (``server_error``, ``temporarily_unavailable``, an unregistered code such as ``too_many_requests``),
    and ``requests.HTTPError``/``UnexpectedRedirect`` for a redirect (an SSO gateway's login page; not followed).
    ``expires_in`` is None when the server omitted it (RFC 6749 §5.1 makes it optional). A refresh answered
    without a new refresh token returns the ``refresh_token`` it was given (RFC 6749 §6: keep the old one).
    """
    request = token_request(
        token_endpoint,
        _grant_type_value(grant_type),
        _client_auth(authorization_header, client_id),
        scope=_scopes(scopes),
        params=[("device_code", device_code), ("audience", audience), ("refresh_token", refresh_token)],
    )
    with _seed_errors():
        response = _transport(http_proxy_url, verify, session, timeout).post(request)
        token = parse_token_response(response, request.secrets)
    log_protocol_warnings(token.warnings)
    # RFC 6749 §6 (C9): a refresh answered without a new refresh token keeps the old one. Callers store what is
    # returned (flytekit's DeviceCodeAuthenticator does), so None here would throw a working refresh token away.
    kept = refresh_token if _grant_type_value(grant_type) == GrantType.REFRESH_TOKEN.value else None
    return token.access_token, token.refresh_token or kept or None, token.expires_in


def get_device_code(
    device_auth_endpoint: str,
    client_id: str,
    audience: typing.Optional[str] = None,  # noqa: UP045
    scope: typing.Optional[typing.List[str]] = None,  # noqa: UP006, UP045
    http_proxy_url: typing.Optional[str] = None,  # noqa: UP045
    verify: typing.Optional[typing.Union[bool, str]] = None,  # noqa: UP007, UP045
    session: typing.Optional[requests.Session] = None,  # noqa: UP045
    *,
    authorization_header: str | None = None,
    timeout: Timeout | None = None,
) -> DeviceCodeResponse:
    """Start a device login (RFC 8628 §3.1). Pass ``authorization_header`` for a confidential device client
    (Google requires one). Show the result's ``user_code`` *and* ``verification_uri`` to the user (§3.3.1)."""
    request = device_authorization_request(
        device_auth_endpoint,
        _client_auth(authorization_header, client_id),
        scope=_scopes(scope),
        params=[("audience", audience)],
    )
    with _seed_errors(device_authorization=True):
        response = _transport(http_proxy_url, verify, session, timeout).post(request)
        authorization = parse_device_authorization(response, request.secrets, cls=DeviceCodeResponse)
    # Polling measures the code's remaining life from here, on the monotonic clock (never the wall clock).
    return dataclasses.replace(authorization, received_monotonic=time.monotonic())


def poll_token_endpoint(
    resp: DeviceCodeResponse,
    token_endpoint: str,
    client_id: str,
    audience: typing.Optional[str] = None,  # noqa: UP045
    scopes: typing.Optional[typing.List[str]] = None,  # noqa: UP006, UP045
    http_proxy_url: typing.Optional[str] = None,  # noqa: UP045
    verify: typing.Optional[typing.Union[bool, str]] = None,  # noqa: UP007, UP045
    *,
    session: requests.Session | None = None,
    authorization_header: str | None = None,
    timeout: Timeout | None = None,
    cancel: threading.Event | None = None,
    on_progress: typing.Callable[[PollProgress], None] | None = None,
) -> typing.Tuple[str, typing.Optional[str], typing.Optional[int]]:  # noqa: UP006, UP045
    """Poll until the user approves; return ``(access_token, refresh_token or None, expires_in or None)``.

    RFC 8628 §3.5: waits ``interval`` (5 s if the server gave none) before every poll, 5 s more after each
    ``slow_down``; stops at once on ``access_denied`` (``AccessDenied``) and ``expired_token``
    (``ExpiredToken``); backs off and keeps going through network errors and 5xx; never polls after the
    device code expires (``ExpiredToken``). ``scopes`` is accepted for compatibility but not sent: the device
    token request defines no scope (RFC 8628 §3.4). Set ``cancel`` from another thread to stop polling.
    """
    del scopes  # RFC 8628 §3.4: not a parameter of the device access token request
    authorization = _device_code_response(resp)
    request = device_token_request(
        token_endpoint,
        _client_auth(authorization_header, client_id),
        authorization.device_code,
        params=[("audience", audience)],
    )
    with _seed_errors():
        token = _poll(
            _transport(http_proxy_url, verify, session, timeout),
            request,
            authorization,
            login_timeout=None,
            cancel=cancel,
            on_progress=on_progress,
            accepted_token_types=("bearer",),
        )
    return token.access_token, token.refresh_token, token.expires_in
