"""The token store contract.

A store maps a cache key (see ``cache_key``) to a ``Token``. The client calls ``lock(key)`` around every
renewal, then re-reads with ``load``: with a store shared by several processes (``FileStore``), exactly one of
them refreshes and the others find its result (C26: a rotated refresh token is never spent twice).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from ..token import Token


@runtime_checkable
class TokenStore(Protocol):
    def load(self, key: str) -> Token | None:
        """The stored token, or None. Never raises for a missing or unreadable entry (it logs instead)."""

    def save(self, key: str, token: Token) -> None:
        """Store atomically: a reader sees the old token or the new one, never a mix."""

    def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
        """Remove the entry. With ``refresh_token``, only if the stored token still holds that refresh token
        (compare-and-delete: never wipe a sibling process's freshly rotated token). True if removed."""

    def lock(self, key: str) -> AbstractContextManager[object]:
        """Exclusive across everyone sharing the store (threads, and processes for file-backed stores)."""


def cache_key(
    *,
    issuer: str | None,
    token_endpoint: str,
    client_id: str | None,
    grant: str,
    scope: str | None = None,
    audience: str | None = None,
    resource: Iterable[str] = (),
    extra: Iterable[tuple[str, str]] = (),
) -> str:
    """A stable key from everything that changes the token (kubelogin-style): issuer (C23: tokens of two
    authorization servers never mix), endpoint, client, grant, requested scope (order-insensitive),
    audience and resources. Hex SHA-256, safe as a file name."""
    material = {
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "client_id": client_id,
        "grant": grant,
        "scope": sorted(set((scope or "").split())),
        "audience": audience,
        "resource": sorted(set(resource)),
        "extra": sorted(extra),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
