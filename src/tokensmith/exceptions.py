"""Typed errors.

The three seed names (``AuthenticationError``, ``AuthenticationPending``, ``AccessTokenNotFoundError``) keep
their original ``RuntimeError`` ancestry so existing ``except`` clauses still match. Below them sits one class
per error code of RFC 6749 §5.2, RFC 8628 §3.5, RFC 7009 §2.2.1 and RFC 8693 §2.2.2 (C8), plus transport and
response errors, so a caller can tell "the user said no" from "a network blip" from "a dead refresh token".

**``AuthenticationError`` means the authorization server said no** (an OAuth error response) or a login ended
without a token. A failure that is *not* the server's verdict is never an ``AuthenticationError``: network
failures (``TransportError``) and answers that are not OAuth at all (``InvalidResponse``: an HTML gateway page,
a 502, a redirect) are plain ``TokensmithError``s. Callers such as flytekit treat any ``AuthenticationError``
from a refresh as "the refresh token is dead" and throw it away; a Wi-Fi blip must not look like that.
Raised through the transport (``requests``), network failures are also the matching ``requests`` exceptions
(``requests.ConnectionError``, ``requests.Timeout``, ``requests.exceptions.SSLError``).

Every public class reports ``__module__ == "tokensmith"`` and is importable from ``tokensmith``.
Messages never contain request secrets: the server's ``error_description`` is scrubbed of anything we sent.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AccessTokenNotFoundError",
    "AuthenticationError",
    "AuthenticationPending",
    "AuthorizationPending",
    "BrowserLoginCancelled",
    "BrowserLoginTimeout",
    "ClientClosed",
    "ConfigurationError",
    "ConnectError",
    "CredentialSourceError",
    "DPoPError",
    "DPoPKeyMissing",
    "DeviceFlowCancelled",
    "DeviceFlowTimeout",
    "DiscoveryError",
    "ExpiredToken",
    "InsecureEndpointError",
    "InteractionRequired",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidEndpointError",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidScope",
    "InvalidTarget",
    "IssuerMismatch",
    "LoginInProgress",
    "LoginRequired",
    "LoopbackListenerError",
    "NonJSONResponse",
    "OAuthError",
    "PersistentSlowDown",
    "RedirectPortInUse",
    "RequestTimeout",
    "ResourceMetadataError",
    "ResponseTooLarge",
    "ServerError",
    "SigningError",
    "SlowDown",
    "StateMismatch",
    "StoreError",
    "StoreLockTimeout",
    "TLSError",
    "TemporarilyUnavailable",
    "TokensmithError",
    "TransportError",
    "UnauthorizedClient",
    "UnexpectedRedirect",
    "UnexpectedTokenType",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "UnsupportedTokenType",
    "UseDPoPNonce",
    "error_class_for",
]

import builtins


class TokensmithError(RuntimeError):
    """Base of every error tokensmith raises.

    ``transient`` is True when retrying the same request later may succeed (network failures, 5xx, 429,
    ``temporarily_unavailable``); False for rejections that need a different request or a new login.
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    transient: bool = False
    retry_after: float | None = None


def _transient_status(status_code: int | None) -> bool:
    """5xx and 429 mean "try again later", whatever the body says."""
    return status_code is not None and (status_code >= 500 or status_code == 429)


class AuthenticationError(TokensmithError):
    """Raised for any failure to obtain a token (seed name, kept for compatibility)."""


class AuthenticationPending(TokensmithError):
    """The token endpoint said "not yet" (seed name, kept for compatibility)."""


class AccessTokenNotFoundError(TokensmithError):
    """No access token is available, or refreshing it failed (seed name, kept for compatibility)."""


class InsecureEndpointError(TokensmithError, ValueError):
    """An endpoint is plain ``http://`` on a non-loopback host (C24). Raised before any network access.

    Set ``TOKENSMITH_ALLOW_INSECURE_HTTP=1`` to opt out (for test rigs only).
    """


class InvalidEndpointError(TokensmithError, ValueError):
    """An endpoint URL cannot be used at all (no scheme, unsupported scheme, no host)."""


class ConfigurationError(TokensmithError, ValueError):
    """The client is configured in a way that cannot work: an unusable key, a refused signing algorithm (``none``),
    or an optional dependency that is not installed (``pip install 'tokensmith[jwt]'``). Raised before any
    request that would carry the faulty configuration is sent."""


class ClientClosed(TokensmithError):
    """The ``TokenClient`` or ``AsyncTokenClient`` was closed (``close()``, ``aclose()``, the end of its ``with``
    block) and is used again: make a new client. A closed client makes no request and starts no thread, as a
    closed ``httpx`` client sends nothing."""


class DiscoveryError(TokensmithError):
    """Authorization server metadata could not be fetched or must not be used (RFC 8414 §3.3: wrong issuer)."""


class LoginRequired(AccessTokenNotFoundError):
    """No usable token, no way to renew it without the user, and the caller did not allow an interactive
    login. Run the login (e.g. ``client.login()``) and try again. When the refresh token was just rejected,
    the ``InvalidGrant`` is chained as ``__cause__``."""


class LoginInProgress(LoginRequired):
    """Another process is running an interactive login for the same identity (same store key), and this call
    may not start or wait for one (``interactive=False``). Finish the login there, or retry later.
    ``pid`` and ``expires_at`` (wall clock) describe the other login, when known."""

    def __init__(self, message: str, *, pid: int | None = None, expires_at: float | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.expires_at = expires_at


# --- transport ---------------------------------------------------------------------------------------------


class TransportError(TokensmithError):
    """The request did not complete: not the server's verdict, so not an ``AuthenticationError``. Transient
    (except TLS failures). Raised by the transport, it is also the matching ``requests`` exception.

    ``request_sent`` is False when the failure happened before the request could reach the server
    (connecting, resolving): repeating it is then safe even for a rotating refresh token. None means unknown.
    """

    transient = True

    def __init__(self, message: str, *, request_sent: bool | None = None) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class RequestTimeout(TransportError, builtins.TimeoutError):
    """Connecting or reading took longer than the configured timeout."""


class ConnectError(TransportError, ConnectionError):
    """The connection could not be established or was dropped."""


class TLSError(TransportError):
    """TLS handshake or certificate verification failed. Not transient in practice, but never a rejection."""

    transient = False


# --- responses that are not valid OAuth --------------------------------------------------------------------


class InvalidResponse(TokensmithError):
    """The server answered, but not with something a conforming client can use (HTML, non-object JSON,
    missing or ill-typed members). Not an OAuth verdict, so not an ``AuthenticationError``. Transient when the
    status says so (5xx, 429)."""

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.transient = _transient_status(status_code)


class NonJSONResponse(InvalidResponse):
    """The body is not JSON at all (an HTML gateway or SSO page, plain text, an empty body). The compat module
    raises it as ``requests``' ``JSONDecodeError`` too, as the seed module did."""


class ResponseTooLarge(InvalidResponse):
    """The body exceeded the size cap; it was not read into memory."""


class UnexpectedRedirect(InvalidResponse):
    """A POST was answered with a redirect. It is not followed: a 307/308 would re-send credentials (C27)."""


class UnexpectedTokenType(InvalidResponse):
    """The token response carries a ``token_type`` this client does not understand (C7)."""


# --- OAuth error responses (C8) ----------------------------------------------------------------------------


class _OAuthErrorFields(TokensmithError):
    """The members of an RFC 6749 §5.2 error response, shared by rejections and "pending" answers."""

    #: The code a bare ``cls()`` stands for.
    default_error = ""
    #: Codes that mean "try again later" whatever the status (``server_error``, ``temporarily_unavailable``).
    _transient_code = False

    def __init__(
        self,
        error: str | None = None,
        error_description: str | None = None,
        error_uri: str | None = None,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.error: str = error or self.default_error
        self.error_description = error_description
        self.error_uri = error_uri
        self.status_code = status_code
        self.retry_after = retry_after
        self.transient = self._transient_code or _transient_status(status_code)
        message = self.error + (f": {error_description}" if error_description else "")
        super().__init__(message + (f" (HTTP {status_code})" if status_code is not None else ""))


class OAuthError(_OAuthErrorFields, AuthenticationError):
    """An RFC 6749 §5.2 error response. Subclasses name each registered code; unknown codes use this class."""


class InvalidRequest(OAuthError):
    """``invalid_request``: the request is malformed."""


class InvalidClient(OAuthError):
    """``invalid_client``: client authentication failed (wrong secret, unknown client, wrong auth method)."""


class InvalidGrant(OAuthError):
    """``invalid_grant``: the grant (refresh token, device code, ...) is invalid, expired or revoked.
    For a refresh token this means the user must log in again (C9)."""


class UnauthorizedClient(OAuthError):
    """``unauthorized_client``: this client may not use this grant type."""


class UnsupportedGrantType(OAuthError):
    """``unsupported_grant_type``."""


class InvalidScope(OAuthError):
    """``invalid_scope``."""


class AccessDenied(OAuthError):
    """``access_denied``: the user (or policy) refused the authorization (RFC 8628 §3.5)."""


class ExpiredToken(OAuthError):
    """``expired_token``: the device code expired before the user approved (RFC 8628 §3.5). Also raised when
    the client's own deadline (``expires_in`` on the monotonic clock) passes."""


class InvalidTarget(OAuthError):
    """``invalid_target`` (RFC 8693 §2.2.2, RFC 8707)."""


class UnsupportedTokenType(OAuthError):
    """``unsupported_token_type`` (RFC 7009 §2.2.1)."""


class ServerError(OAuthError):
    """``server_error``: transient by definition."""

    _transient_code = True


class TemporarilyUnavailable(OAuthError):
    """``temporarily_unavailable``: transient by definition."""

    _transient_code = True


class AuthorizationPending(_OAuthErrorFields, AuthenticationPending):
    """``authorization_pending``: the user has not finished yet; keep polling (RFC 8628 §3.5)."""

    default_error = "authorization_pending"


class SlowDown(AuthorizationPending):
    """``slow_down``: keep polling, 5 s slower for this and every later request (RFC 8628 §3.5, C17)."""

    default_error = "slow_down"

    #: A new interval the server sent with the error (GitHub does), if any.
    interval: int | None = None


# --- device-flow outcomes decided by the client ------------------------------------------------------------


class PersistentSlowDown(AuthenticationError):
    """The server kept answering ``slow_down`` although the client waited longer each time."""


class DeviceFlowCancelled(AuthenticationError):
    """The caller cancelled device polling."""


class DeviceFlowTimeout(AuthenticationError):
    """The caller's own timeout passed before the user approved (shorter than the device code lifetime)."""


_ERROR_TABLE: dict[str, type[OAuthError] | type[AuthorizationPending]] = {
    "invalid_request": InvalidRequest,
    "invalid_client": InvalidClient,
    "invalid_grant": InvalidGrant,
    "unauthorized_client": UnauthorizedClient,
    "unsupported_grant_type": UnsupportedGrantType,
    "invalid_scope": InvalidScope,
    "access_denied": AccessDenied,
    "expired_token": ExpiredToken,
    "invalid_target": InvalidTarget,
    "unsupported_token_type": UnsupportedTokenType,
    "server_error": ServerError,
    "temporarily_unavailable": TemporarilyUnavailable,
    "authorization_pending": AuthorizationPending,
    "slow_down": SlowDown,
}


def error_class_for(error: str) -> type[OAuthError] | type[AuthorizationPending]:
    """The exception class for an error code; ``OAuthError`` for codes no RFC we implement registers."""
    return _ERROR_TABLE.get(error, OAuthError)


# --- token stores ------------------------------------------------------------------------------------------


class StoreError(TokensmithError):
    """A token store could not do what was asked (writing a token or a lease, preparing its directory, taking
    its lock). The message names the path and says what to do; it never contains a token."""


class StoreLockTimeout(StoreError, builtins.TimeoutError):
    """``lock(key)`` waited ``lock_timeout`` seconds while another thread or process held the lock."""


# --- browser login (authorization code + PKCE on a loopback redirect, RFC 6749 §4.1, RFC 7636, RFC 8252) -------


class UnsupportedResponseType(OAuthError):
    """``unsupported_response_type`` (RFC 6749 §4.1.2.1): the server does not issue codes this way."""


class InteractionRequired(OAuthError):
    """OpenID Connect's ``interaction_required``, ``login_required``, ``consent_required`` and
    ``account_selection_required`` (OIDC Core §3.1.2.6): the server needs the person (``prompt=none`` was sent).
    ``error`` holds which of the codes it was."""


class StateMismatch(AuthenticationError):
    """A redirect whose ``state`` is missing or not the one this login sent (RFC 6749 §10.12, RFC 9700 §2.1): it
    may be forged or belong to another login, and is refused. On the loopback listener the login goes on
    waiting for the real one; a pasted URL that does not match ends a paste-mode login."""


class IssuerMismatch(AuthenticationError):
    """The redirect's ``iss`` is not the expected issuer, or is missing although the server advertises
    ``authorization_response_iss_parameter_supported`` (RFC 9207 §2.4, mix-up defence C23). The code is not used."""


class BrowserLoginTimeout(AuthenticationError):
    """No redirect arrived within ``login_timeout``; the listener is closed."""


class BrowserLoginCancelled(AuthenticationError):
    """The caller cancelled the browser login (the ``cancel`` event was set); the listener is closed."""


class LoopbackListenerError(TokensmithError):
    """The loopback redirect listener could not be started (RFC 8252 §7.3): nothing was sent, nothing was
    opened. Not the server's verdict, so not an ``AuthenticationError``. ``host`` and ``port`` say where."""

    def __init__(self, message: str, *, host: str | None = None, port: int | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


class RedirectPortInUse(LoopbackListenerError):
    """The fixed port of the configured ``redirect_uri`` is taken by another program. Close it, or register a
    loopback redirect URI without a fixed port (RFC 8252 §7.3 lets the server accept any port)."""


# --- DPoP (RFC 9449) and protected resource metadata (RFC 9728) ----------------------------------------------


class DPoPError(ConfigurationError):
    """DPoP cannot be used as configured: PyJWT with cryptography is missing (``pip install 'tokensmith[jwt]'``),
    the key is unusable (an unsupported type, a curve that does not match the algorithm), or a proof was asked
    of a client without DPoP or before it has a key."""


class DPoPKeyMissing(LoginRequired):
    """The stored token is bound to a DPoP key (RFC 9449 §5, recorded as its ``jkt``) that this client does not
    have: the key's slot in the store is empty, or holds another key. The token is not sent anywhere (a
    DPoP-bound token without its key is useless, and must never be sent as a Bearer token); log in again."""


class InvalidDPoPProof(OAuthError):
    """``invalid_dpop_proof`` (RFC 9449 §5, §7.1): the server refused the DPoP proof."""


class UseDPoPNonce(OAuthError):
    """``use_dpop_nonce`` (RFC 9449 §8, §9) that persisted after the one retry with the server's nonce."""


class CredentialSourceError(TokensmithError):
    """A callable that supplies a credential failed: a ``TokenExchangeGrant`` subject or actor token callable, or a
    ``JWTBearerGrant`` assertion callable, raised or returned no token (a rotating workload-identity file caught
    mid-rotation, a vault that did not answer). Only the exception's type is shown: its message may name paths,
    accounts or credentials (C10). Transient: such trouble passes, so a renewal ahead of expiry keeps serving the
    still-valid token, as after a network failure."""

    transient = True


class SigningError(CredentialSourceError):
    """A signature could not be made: the signer callable of ``PrivateKeyJWT`` or ``JWTBearerGrant.signed`` (an
    HSM, a cloud KMS, an agent), or of ``DPoPKey.from_signer``, raised. Only the exception's type is shown (see
    ``CredentialSourceError``, its base); transient like it."""


class ResourceMetadataError(DiscoveryError):
    """Protected resource metadata (RFC 9728) could not be fetched or must not be used: its ``resource`` is not
    the resource identifier asked about (§3.3), it names no authorization server, or its URL is refused."""


_ERROR_TABLE.update(
    {
        "unsupported_response_type": UnsupportedResponseType,
        "invalid_dpop_proof": InvalidDPoPProof,
        "use_dpop_nonce": UseDPoPNonce,
        "interaction_required": InteractionRequired,
        "login_required": InteractionRequired,
        "consent_required": InteractionRequired,
        "account_selection_required": InteractionRequired,
    }
)


def _present_as_public() -> None:
    """httpx-style public face: every error reports ``tokensmith`` as its module (they are all exported there)."""
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type):
            obj.__module__ = "tokensmith"


_present_as_public()
