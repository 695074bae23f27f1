"""``KeyringStore``: tokens in the OS keyring, with a ``FileStore`` fallback that always works.

IDP-QUIRKS, "Keyrings": keyrings are locked or absent over SSH and in containers (``KeyringLocked``,
``InitError``, no D-Bus), probing one can spawn or hang on D-Bus, Windows Credential Manager caps a secret at
2560 bytes and macOS Keychain rejects very large items. So:

- ``keyring`` is imported lazily, on first use, never by ``import tokensmith``.
- The backend is probed once, lazily, in a daemon thread, for at most ``probe_timeout`` seconds. A failing,
  absent, locked, ``fail``/``null`` or silent backend sends every token to the fallback ``FileStore`` with
  ONE ``KeyringFallbackWarning`` saying why and where tokens now go.
- A token whose JSON exceeds ``max_secret_bytes`` goes to the fallback file (one log warning per key).
- Keyrings cannot lock: ``lock(key)`` is the fallback ``FileStore``'s lock (threads and processes).
- ``delete`` is compare-and-delete under that lock and removes the entry from both places.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ..token import Token
from .codec import NewerFormatError, decode_token, encode_token, short_key
from .file import FileStore

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = ["KeyringFallbackWarning", "KeyringStore"]

logger = logging.getLogger("tokensmith.stores")

#: The user name of the entry read (never written) when probing the backend.
PROBE_USERNAME = "tokensmith-probe"


class KeyringFallbackWarning(UserWarning):
    """The OS keyring cannot be used; tokens are kept in files (0600, per-user directory) instead."""


class KeyringStore:
    """Tokens as JSON secrets (``to_dict()``, expiry included) under ``service``, one entry per key."""

    def __init__(
        self,
        service: str = "tokensmith",
        *,
        fallback: FileStore | None = None,
        probe_timeout: float = 3.0,
        max_secret_bytes: int = 2500,
    ) -> None:
        self.service = service
        self.fallback = fallback if fallback is not None else FileStore()
        self.probe_timeout = probe_timeout
        self.max_secret_bytes = max_secret_bytes
        self._probe_lock = threading.Lock()
        self._probed = False
        self._backend: KeyringBackend | None = None
        self._guard = threading.Lock()
        self._oversize_warned: set[str] = set()
        self._failure_warned = False

    def __repr__(self) -> str:
        return f"KeyringStore({self.service!r}, fallback={self.fallback!r})"

    # -- the backend --

    def uses_keyring(self) -> bool:
        """Whether tokens go to the OS keyring (probing it now if that was not done yet)."""
        return self._keyring() is not None

    def _keyring(self) -> KeyringBackend | None:
        if self._probed:
            return self._backend
        with self._probe_lock:
            if not self._probed:
                backend, reason = _probe(self.service, self.probe_timeout)
                if backend is None:
                    message = (
                        f"OS keyring unavailable ({reason}); tokens are stored in {self.fallback.directory} "
                        "instead (files readable only by you)"
                    )
                    warnings.warn(message, KeyringFallbackWarning, stacklevel=3)
                self._backend = backend
                self._probed = True
        return self._backend

    def _operation_failed(self, operation: str, key: str, error: Exception) -> None:
        with self._guard:
            first, self._failure_warned = not self._failure_warned, True
        log = logger.warning if first else logger.debug
        log(
            "keyring %s failed for key %s (%s); using the token files in %s",
            operation,
            short_key(key),
            type(error).__name__,
            self.fallback.directory,
        )

    # -- TokenStore --

    def load(self, key: str) -> Token | None:
        backend = self._keyring()
        if backend is not None:
            try:
                secret = backend.get_password(self.service, key)
            except Exception as error:
                self._operation_failed("read", key, error)
                secret = None
            if secret is not None:
                try:
                    return decode_token(secret.encode("utf-8"))
                except NewerFormatError as newer:
                    logger.warning(
                        "keyring entry for key %s has format version %s, newer than this tokensmith understands; "
                        "ignored",
                        short_key(key),
                        newer.version,
                    )
                except Exception as error:
                    logger.warning(
                        "keyring entry for key %s is unreadable (%s); ignored", short_key(key), type(error).__name__
                    )
                return None
        return self.fallback.load(key)

    def save(self, key: str, token: Token) -> None:
        secret = encode_token(token).decode("ascii").rstrip("\n")
        backend = self._keyring()
        if backend is None:
            self.fallback.save(key, token)
            return
        size = _secret_size(secret)
        if size > self.max_secret_bytes:
            with self._guard:
                first = key not in self._oversize_warned
                self._oversize_warned.add(key)
            (logger.warning if first else logger.debug)(
                "token for key %s is %d bytes, more than the keyring takes (%d); stored in %s instead",
                short_key(key),
                size,
                self.max_secret_bytes,
                self.fallback.directory,
            )
            self.fallback.save(key, token)
            self._remove_from_keyring(backend, key)
            return
        try:
            # Writes only when something changed (a keychain may prompt on every write).
            if backend.get_password(self.service, key) != secret:
                backend.set_password(self.service, key, secret)
        except Exception as error:
            self._operation_failed("write", key, error)
            self.fallback.save(key, token)
            return
        # A copy left in the fallback (an earlier oversize or failed write) would be stale: remove it.
        self.fallback.discard(key)

    def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
        with self.lock(key):
            removed = False
            backend = self._keyring()
            if backend is not None:
                try:
                    secret = backend.get_password(self.service, key)
                    if secret is not None and (refresh_token is None or _refresh_token_of(secret) == refresh_token):
                        backend.delete_password(self.service, key)
                        removed = True
                except Exception as error:
                    self._operation_failed("delete", key, error)
            if self.fallback.delete(key, refresh_token=refresh_token):
                removed = True
            return removed

    def lock(self, key: str) -> AbstractContextManager[object]:
        """The fallback ``FileStore``'s lock: keyrings have none."""
        return self.fallback.lock(key)

    def _remove_from_keyring(self, backend: KeyringBackend, key: str) -> None:
        try:
            if backend.get_password(self.service, key) is not None:
                backend.delete_password(self.service, key)
        except Exception as error:
            self._operation_failed("delete", key, error)


def _secret_size(secret: str) -> int:
    """What the backend will count: Windows Credential Manager stores UTF-16, the others UTF-8."""
    return len(secret.encode("utf-16-le" if sys.platform == "win32" else "utf-8"))


def _refresh_token_of(secret: str) -> str | None:
    try:
        return decode_token(secret.encode("utf-8")).refresh_token
    except Exception:
        return None


def _probe(service: str, timeout: float) -> tuple[KeyringBackend | None, str]:
    """Find the configured backend and read one entry, in a daemon thread, for at most ``timeout`` seconds.

    Returns ``(backend, "")`` when usable, else ``(None, reason)``. A thread that hangs (a stuck D-Bus) is
    abandoned; being a daemon it never delays interpreter exit."""
    outcome: list[tuple[KeyringBackend | None, str]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(_probe_now(service))
        except Exception as error:
            outcome.append((None, _describe(error)))
        finally:
            done.set()

    threading.Thread(target=run, name="tokensmith-keyring-probe", daemon=True).start()
    if not done.wait(timeout) or not outcome:
        return None, f"the keyring did not answer within {timeout:g} s"
    return outcome[0]


def _probe_now(service: str) -> tuple[KeyringBackend | None, str]:
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError:
        return None, "the 'keyring' package is not installed: pip install 'tokensmith[keyring]'"
    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if isinstance(backend, fail.Keyring):
        return None, "no keyring backend is available"
    if isinstance(backend, null.Keyring):
        return None, f"the configured backend {name} stores nothing"
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None, "no keyring backend is available"
    backend.get_password(service, PROBE_USERNAME)
    return backend, ""


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
