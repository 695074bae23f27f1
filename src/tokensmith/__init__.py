"""tokensmith: a correct OAuth 2.0 token client.

Everything a user meets is importable from here and reports ``__module__ == "tokensmith"``: the clients, the
token, the stores, the client-authentication objects, the device- and browser-login callback payloads and
every error.

``import tokensmith`` costs next to nothing: every name loads on first use (PEP 562). The command line's cached
token path (``tokensmith token``), run by kubectl and git on every call, relies on that.
"""

from __future__ import annotations

from ._version import __version__

# Not `from typing import TYPE_CHECKING`: importing typing alone costs milliseconds on every CLI call.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from ._protocol.client_auth import ClientSecretBasic, ClientSecretPost, NoClientAuth, basic_authorization
    from ._protocol.polling import PollOutcome
    from ._protocol.renewal import RenewalPolicy, RenewalState
    from ._retry import RetryPolicy
    from ._transport import Transport
    from .aio import AsyncTokenClient, AsyncTransport
    from .browser import BrowserPrompt, browser_login
    from .client import ClientStats, TokenClient
    from .device import DevicePrompt, PollProgress, device_login
    from .dpop import DPoPKey
    from .events import RenewalFailed, RenewalStarted, RenewalSucceeded, ServedStale
    from .exceptions import *  # noqa: F403
    from .grants import JWTBearerGrant, TokenExchangeGrant
    from .jwt_auth import ClientSecretJWT, PrivateKeyJWT
    from .resource import ResourceMetadata, discover_resource
    from .stores import FileStore, KeyringStore, Lease, LeasingStore, MemoryStore, TokenStore
    from .token import Token

#: Every error class (kept in step with ``tokensmith.exceptions.__all__`` by a test), loaded on first use.
_ERRORS = (
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
)

_LAZY: dict[str, tuple[str, str]] = {
    "TokenClient": ("client", "TokenClient"),
    "ClientStats": ("client", "ClientStats"),
    "Token": ("token", "Token"),
    "Transport": ("_transport", "Transport"),
    "RetryPolicy": ("_retry", "RetryPolicy"),
    "NoClientAuth": ("_protocol.client_auth", "NoClientAuth"),
    "ClientSecretBasic": ("_protocol.client_auth", "ClientSecretBasic"),
    "ClientSecretPost": ("_protocol.client_auth", "ClientSecretPost"),
    "basic_authorization": ("_protocol.client_auth", "basic_authorization"),
    "PrivateKeyJWT": ("jwt_auth", "PrivateKeyJWT"),
    "ClientSecretJWT": ("jwt_auth", "ClientSecretJWT"),
    "JWTBearerGrant": ("grants", "JWTBearerGrant"),
    "TokenExchangeGrant": ("grants", "TokenExchangeGrant"),
    "PollOutcome": ("_protocol.polling", "PollOutcome"),
    "DevicePrompt": ("device", "DevicePrompt"),
    "PollProgress": ("device", "PollProgress"),
    "device_login": ("device", "device_login"),
    "BrowserPrompt": ("browser", "BrowserPrompt"),
    "browser_login": ("browser", "browser_login"),
    "MemoryStore": ("stores", "MemoryStore"),
    "FileStore": ("stores", "FileStore"),
    "KeyringStore": ("stores", "KeyringStore"),
    "TokenStore": ("stores", "TokenStore"),
    "Lease": ("stores", "Lease"),
    "LeasingStore": ("stores", "LeasingStore"),
    "AsyncTokenClient": ("aio", "AsyncTokenClient"),
    "AsyncTransport": ("aio", "AsyncTransport"),
    "RenewalPolicy": ("_protocol.renewal", "RenewalPolicy"),
    "RenewalState": ("_protocol.renewal", "RenewalState"),
    "RenewalStarted": ("events", "RenewalStarted"),
    "RenewalSucceeded": ("events", "RenewalSucceeded"),
    "RenewalFailed": ("events", "RenewalFailed"),
    "ServedStale": ("events", "ServedStale"),
    "DPoPKey": ("dpop", "DPoPKey"),
    "ResourceMetadata": ("resource", "ResourceMetadata"),
    "discover_resource": ("resource", "discover_resource"),
    **{name: ("exceptions", name) for name in _ERRORS},
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'tokensmith' has no attribute {name!r}")
    import importlib

    module, attr = target
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    if isinstance(value, type) and value.__module__.startswith(__name__ + "."):
        value.__module__ = __name__  # shown as tokensmith.<name>, as httpx does
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
