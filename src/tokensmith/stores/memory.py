"""``MemoryStore``: process-local, for services and tests. Implements ``LeasingStore`` with a dict (one
process, so a lease's pid is always alive: only expiry ends a lease nobody releases)."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import defaultdict

from ..token import Token
from .base import Lease, check_claim, new_lease


class MemoryStore:
    """A dict behind a lock. ``lock(key)`` is a per-key re-entrant lock (threads only)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._leases: dict[str, Lease] = {}
        # DPoP private keys, apart from the tokens (a token never carries its key).
        self._keys: dict[str, str] = {}
        self._guard = threading.Lock()
        self._locks: defaultdict[str, threading.RLock] = defaultdict(threading.RLock)
        _stores.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's threads are gone, so are the locks they held and the leases they
        claimed (nothing in this copy would ever release them). The tokens stay."""
        self._guard = threading.Lock()
        self._locks = defaultdict(threading.RLock)
        self._leases = {}

    def load(self, key: str) -> Token | None:
        with self._guard:
            return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        with self._guard:
            self._tokens[key] = token

    def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
        with self._guard:
            current = self._tokens.get(key)
            if current is None or (refresh_token is not None and current.refresh_token != refresh_token):
                return False
            del self._tokens[key]
            return True

    def lock(self, key: str) -> threading.RLock:
        with self._guard:
            return self._locks[key]

    # -- DPoP key slot (RFC 9449): the private JWK, separate from the token --

    def load_key(self, key: str) -> str | None:
        with self._guard:
            return self._keys.get(key)

    def save_key(self, key: str, jwk: str) -> None:
        with self._guard:
            self._keys[key] = jwk

    def delete_key(self, key: str) -> bool:
        with self._guard:
            return self._keys.pop(key, None) is not None

    # -- LeasingStore --

    def claim(self, key: str, owner: str, kind: str, ttl: float) -> Lease:
        check_claim(owner, kind, ttl)
        with self.lock(key), self._guard:
            now = time.time()
            current = self._leases.get(key)
            if current is not None and current.owner != owner and current.is_live(now):
                return current
            lease = self._leases[key] = new_lease(owner, kind, ttl, now)
            return lease

    def release(self, key: str, owner: str) -> None:
        with self._guard:
            current = self._leases.get(key)
            if current is not None and current.owner == owner:
                del self._leases[key]

    def current_lease(self, key: str) -> Lease | None:
        with self._guard:
            return self._leases.get(key)


_stores: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


def _reset_after_fork() -> None:  # pragma: no cover - runs in forked children
    for store in list(_stores):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
