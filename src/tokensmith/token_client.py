"""Drop-in replacement for ``flytekit.clients.auth.token_client``.

Same names, signatures and return values; change one import and the seed module's defects go away (see
``README.md`` → Migration): typed errors, timeouts, a pooled session, ``slow_down`` honoured, optional
``expires_in``/``interval`` handled, no redirects on POST, no ``print``. A thin adapter over the sans-IO core
in ``tokensmith._protocol`` and the one HTTP seam in ``tokensmith._transport``.

``requests`` is imported as a module attribute on purpose: test suites patch ``<this module>.requests.Session``
(or ``<this module>.requests``) and that must keep working.
"""

from __future__ import annotations

import base64
import logging
import threading
import typing
import urllib.parse

import requests

from ._protocol.client_auth import ClientAuth, NoClientAuth, PrebuiltAuthorization
from ._protocol.device import (
    DeviceAuthorization,
    device_authorization_from_json,
    device_authorization_request,
    device_token_request,
    parse_device_authorization,
)
from ._protocol.token import GrantType, parse_token_response, token_request
from ._transport import DEFAULT_TIMEOUT, Timeout, Transport, pooled_session
from .device import PollProgress, poll_device_token
from .exceptions import AuthenticationError, AuthenticationPending

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
    http_proxy_url: str | None, verify: bool | str | None, session: requests.Session | None, timeout: Timeout | None
) -> Transport:
    proxies = {"https": http_proxy_url, "http": http_proxy_url} if http_proxy_url else None
    if session is None:
        # One pooled session per process instead of a new one per call; looked up through this module's
        # `requests` so a patched `requests.Session` is honoured.
        session = pooled_session(requests.Session)
    return Transport(session, proxies=proxies, verify=verify, timeout=timeout or DEFAULT_TIMEOUT)


def _client_auth(authorization_header: str | None, client_id: str | None) -> ClientAuth:
    if authorization_header:
        return PrebuiltAuthorization(authorization_header, client_id)
    return NoClientAuth(client_id)


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
    RFC 6749 §5.2 code (``InvalidGrant``, ``InvalidClient``, ... all ``AuthenticationError``),
    ``InvalidResponse`` for non-OAuth bodies (HTML error pages), ``TransportError`` for network failures.
    ``expires_in`` is None when the server omitted it (RFC 6749 §5.1 makes it optional).
    """
    request = token_request(
        token_endpoint,
        grant_type,
        _client_auth(authorization_header, client_id),
        scope=scopes,
        params=[("device_code", device_code), ("audience", audience), ("refresh_token", refresh_token)],
    )
    response = _transport(http_proxy_url, verify, session, timeout).post(request)
    token = parse_token_response(response, request.secrets)
    return token.access_token, token.refresh_token, token.expires_in


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
        scope=scope,
        params=[("audience", audience)],
    )
    response = _transport(http_proxy_url, verify, session, timeout).post(request)
    return parse_device_authorization(response, request.secrets, cls=DeviceCodeResponse)


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
    request = device_token_request(
        token_endpoint,
        _client_auth(authorization_header, client_id),
        resp.device_code,
        params=[("audience", audience)],
    )
    token = poll_device_token(
        _transport(http_proxy_url, verify, session, timeout), request, resp, cancel=cancel, on_progress=on_progress
    )
    return token.access_token, token.refresh_token, token.expires_in
