"""tokensmith: a correct OAuth 2.0 token client.

``import tokensmith`` stays light (no ``requests``): heavy modules load when first used.
"""

from __future__ import annotations

from ._version import __version__
from .exceptions import (
    AccessDenied,
    AccessTokenNotFoundError,
    AuthenticationError,
    AuthenticationPending,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    OAuthError,
    SlowDown,
    TokensmithError,
    TransportError,
)

__all__ = [
    "AccessDenied",
    "AccessTokenNotFoundError",
    "AuthenticationError",
    "AuthenticationPending",
    "AuthorizationPending",
    "ExpiredToken",
    "InvalidClient",
    "InvalidGrant",
    "InvalidResponse",
    "OAuthError",
    "SlowDown",
    "TokensmithError",
    "TransportError",
    "__version__",
]
