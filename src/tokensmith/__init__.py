"""tokensmith: a correct OAuth 2.0 token client.

``import tokensmith`` stays light (no ``requests``): the client, the transport and the stores load on first
attribute access, so a CLI's cached-token path pays only for what it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._protocol.client_auth import ClientSecretBasic, ClientSecretPost, NoClientAuth, basic_authorization
from ._version import __version__
from .exceptions import (
    AccessDenied,
    AccessTokenNotFoundError,
    AuthenticationError,
    AuthenticationPending,
    AuthorizationPending,
    DeviceFlowCancelled,
    DeviceFlowTimeout,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    LoginRequired,
    OAuthError,
    SlowDown,
    TokensmithError,
    TransportError,
)
from .token import Token

if TYPE_CHECKING:
    from ._retry import RetryPolicy
    from ._transport import Transport
    from .client import TokenClient
    from .stores import FileStore, KeyringStore, MemoryStore

__all__ = [
    "AccessDenied",
    "AccessTokenNotFoundError",
    "AuthenticationError",
    "AuthenticationPending",
    "AuthorizationPending",
    "ClientSecretBasic",
    "ClientSecretPost",
    "DeviceFlowCancelled",
    "DeviceFlowTimeout",
    "ExpiredToken",
    "FileStore",
    "InvalidClient",
    "InvalidGrant",
    "InvalidResponse",
    "KeyringStore",
    "LoginRequired",
    "MemoryStore",
    "NoClientAuth",
    "OAuthError",
    "RetryPolicy",
    "SlowDown",
    "Token",
    "TokenClient",
    "TokensmithError",
    "Transport",
    "TransportError",
    "__version__",
    "basic_authorization",
]

_LAZY = {
    "TokenClient": ("client", "TokenClient"),
    "Transport": ("_transport", "Transport"),
    "RetryPolicy": ("_retry", "RetryPolicy"),
    "MemoryStore": ("stores", "MemoryStore"),
    "FileStore": ("stores", "FileStore"),
    "KeyringStore": ("stores", "KeyringStore"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'tokensmith' has no attribute {name!r}")
