"""tokensmith: a correct OAuth 2.0 token client.

Everything a user meets is importable from here and reports ``__module__ == "tokensmith"``: the clients, the
token, the stores, the client-authentication objects, the device-login callback payloads and every error.

``import tokensmith`` stays light (no ``requests``): the client, the transport and the stores load on first
attribute access, so a CLI's cached-token path pays only for what it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import exceptions as _exceptions
from ._protocol.client_auth import ClientSecretBasic, ClientSecretPost, NoClientAuth, basic_authorization
from ._protocol.polling import PollOutcome
from ._version import __version__
from .exceptions import *  # noqa: F403 - every error class is part of the public face
from .token import Token

if TYPE_CHECKING:
    from ._protocol.renewal import RenewalPolicy, RenewalState
    from ._retry import RetryPolicy
    from ._transport import Transport
    from .aio import AsyncTokenClient, AsyncTransport
    from .client import ClientStats, TokenClient
    from .device import DevicePrompt, PollProgress, device_login
    from .events import RenewalFailed, RenewalStarted, RenewalSucceeded, ServedStale
    from .stores import FileStore, KeyringStore, Lease, LeasingStore, MemoryStore, TokenStore

__all__ = [
    "AsyncTokenClient",
    "AsyncTransport",
    "ClientSecretBasic",
    "ClientSecretPost",
    "ClientStats",
    "DevicePrompt",
    "FileStore",
    "KeyringStore",
    "Lease",
    "LeasingStore",
    "MemoryStore",
    "NoClientAuth",
    "PollOutcome",
    "PollProgress",
    "RenewalFailed",
    "RenewalPolicy",
    "RenewalStarted",
    "RenewalState",
    "RenewalSucceeded",
    "RetryPolicy",
    "ServedStale",
    "Token",
    "TokenClient",
    "TokenStore",
    "Transport",
    "__version__",
    "basic_authorization",
    "device_login",
    *_exceptions.__all__,
]

_LAZY = {
    "TokenClient": ("client", "TokenClient"),
    "ClientStats": ("client", "ClientStats"),
    "Transport": ("_transport", "Transport"),
    "RetryPolicy": ("_retry", "RetryPolicy"),
    "DevicePrompt": ("device", "DevicePrompt"),
    "PollProgress": ("device", "PollProgress"),
    "device_login": ("device", "device_login"),
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
}

# The public classes defined outside the lazily loaded modules report this package as their home (httpx-style).
for _cls in (ClientSecretBasic, ClientSecretPost, NoClientAuth, PollOutcome, Token):
    _cls.__module__ = __name__


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        if isinstance(value, type) and value.__module__.startswith(__name__ + "."):
            value.__module__ = __name__
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'tokensmith' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
