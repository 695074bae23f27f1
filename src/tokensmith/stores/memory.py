"""``MemoryStore``: process-local, for services and tests."""

from __future__ import annotations

import threading
from collections import defaultdict

from ..token import Token


class MemoryStore:
    """A dict behind a lock. ``lock(key)`` is a per-key re-entrant lock (threads only)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._guard = threading.Lock()
        self._locks: defaultdict[str, threading.RLock] = defaultdict(threading.RLock)

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
