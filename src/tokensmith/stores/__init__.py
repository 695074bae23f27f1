"""Token stores: ``MemoryStore``, ``FileStore`` (atomic, locked, 0600), ``KeyringStore`` (with file fallback).

All three implement ``TokenStore`` and the optional ``LeasingStore`` (renewal leases); their failures are
``StoreError`` (``StoreLockTimeout`` when a lock wait times out).

Imported lazily so that ``import tokensmith.stores`` costs nothing until a store is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import StoreError, StoreLockTimeout
from .base import Lease, LeasingStore, TokenStore, cache_key

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "MemoryStore":
        from .memory import MemoryStore

        return MemoryStore
    if name == "FileStore":
        from .file import FileStore

        return FileStore
    if name == "KeyringStore":
        from .keyring import KeyringStore

        return KeyringStore
    raise AttributeError(name)
