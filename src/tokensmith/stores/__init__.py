"""Token stores: ``MemoryStore``, ``FileStore`` (atomic, locked, 0600), ``KeyringStore`` (with file fallback).

All three implement ``TokenStore`` and the optional ``LeasingStore`` (renewal leases); their failures are
``StoreError`` (``StoreLockTimeout`` when a lock wait times out).

Every name loads on first use, so ``import tokensmith.stores`` (and the command line's light file reader,
``tokensmith.stores._fs``) costs nothing until a store is used.
"""

from __future__ import annotations

import importlib

# Not `from typing import TYPE_CHECKING`: importing typing alone costs milliseconds on every CLI call.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from ..exceptions import StoreError, StoreLockTimeout
    from .base import Lease, LeasingStore, TokenStore, cache_key
    from .file import FileStore
    from .keyring import KeyringStore
    from .memory import MemoryStore

__all__ = [
    "FileStore",
    "KeyringStore",
    "Lease",
    "LeasingStore",
    "MemoryStore",
    "StoreError",
    "StoreLockTimeout",
    "TokenStore",
    "cache_key",
]

_HOMES = {
    "FileStore": ".file",
    "KeyringStore": ".keyring",
    "MemoryStore": ".memory",
    "Lease": ".base",
    "LeasingStore": ".base",
    "TokenStore": ".base",
    "cache_key": ".base",
    "StoreError": "..exceptions",
    "StoreLockTimeout": "..exceptions",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(home, __name__), name)
