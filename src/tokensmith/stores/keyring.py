"""``KeyringStore``: tokens in the OS keyring, with a ``FileStore`` fallback that always works.

IDP-QUIRKS, "Keyrings": keyrings are locked or absent over SSH and in containers (``KeyringLocked``,
``InitError``, no D-Bus), any call can spawn or hang on D-Bus or wait on a prompt nobody answers, Windows
Credential Manager caps a secret at 2560 bytes and macOS Keychain rejects very large items. So:

- ``keyring`` is imported lazily, on first use, never by ``import tokensmith``.
- Every keyring call is time-boxed: it runs in a daemon thread and is abandoned after ``probe_timeout`` (the
  first, probing read) or ``call_timeout`` seconds (every later read, write and delete).
- The backend is probed once, lazily. A failing, absent, locked, ``fail``/``null`` or silent backend sends
  every token to the fallback ``FileStore`` with ONE ``KeyringFallbackWarning`` saying why and where tokens go.
- A later call that fails falls back to the file for that operation; one that does not answer within
  ``call_timeout`` makes this store stop using the keyring altogether (each call would cost the timeout and
  leave a stuck thread behind). Either way the store logs ONE warning, however many calls are affected.
- A token whose JSON exceeds ``max_secret_bytes`` goes to the fallback file (one log warning per key).
- A token in the fallback file wins over the keyring's copy: every successful keyring write removes the file
  copy, so a file copy exists only if it was written later, when the keyring could not take it (failing, hung,
  oversize). Serving the keyring's older copy would spend a rotated-away refresh token.
- Keyrings cannot lock: ``lock(key)`` and the renewal leases (``claim``, ``release``, ``current_lease``) are
  the fallback ``FileStore``'s (threads and processes).
- ``delete`` is compare-and-delete under that lock and removes the entry from both places.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

from ..token import Token
from .base import Lease
from .codec import NewerFormatError, decode_token, encode_token, short_key
from .file import FileStore

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = ["KeyringFallbackWarning", "KeyringStore"]

logger = logging.getLogger("tokensmith.stores")

#: The user name of the entry read (never written) when probing the backend.
PROBE_USERNAME = "tokensmith-probe"

_T = TypeVar("_T")


class KeyringFallbackWarning(UserWarning):
    """The OS keyring cannot be used; tokens are kept in files (0600, per-user directory) instead."""


class _NoAnswer(Exception):
    """A time-boxed call did not return in time."""


class _KeyringUnavailable(Exception):
    """A keyring call failed or did not answer (already reported); the caller uses the fallback file."""


class KeyringStore:
    """Tokens as JSON secrets (``to_dict()``, expiry included) under ``service``, one entry per key."""

    def __init__(
        self,
        service: str = "tokensmith",
        *,
        fallback: FileStore | None = None,
        probe_timeout: float = 3.0,
        call_timeout: float = 3.0,
        max_secret_bytes: int = 2500,
    ) -> None:
        for name, value in (("probe_timeout", probe_timeout), ("call_timeout", call_timeout)):
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be a number of seconds, not {value!r}")
        self.service = service
        self.fallback = fallback if fallback is not None else FileStore()
        self.probe_timeout = probe_timeout
        self.call_timeout = call_timeout
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

    def _call(self, operation: str, key: str, function: Callable[[], _T]) -> _T:
        """``function()`` (one keyring call) in a daemon thread for at most ``call_timeout`` seconds.
        Raises ``_KeyringUnavailable`` (after reporting) when it fails or does not answer."""
        try:
            return _time_boxed(function, self.call_timeout, f"tokensmith-keyring-{operation}")
        except _NoAnswer:
            self._backend = None  # never again: every call would cost call_timeout and strand a thread
            self._report(
                "keyring %s for key %s did not answer within %g s; this store no longer uses the keyring and keeps "
                "tokens in %s",
                operation,
                short_key(key),
                self.call_timeout,
                self.fallback.directory,
            )
        except Exception as error:
            self._report(
                "keyring %s failed for key %s (%s); using the token files in %s",
                operation,
                short_key(key),
                type(error).__name__,
                self.fallback.directory,
            )
        raise _KeyringUnavailable

    def _report(self, message: str, *args: object) -> None:
        """ONE warning per store for keyring trouble after the probe; later ones go to debug."""
        with self._guard:
            first, self._failure_warned = not self._failure_warned, True
        (logger.warning if first else logger.debug)(message, *args)

    def _read_item(self, key: str, item: str) -> str | None:
        """The keyring's item ``item`` (for store key ``key``), or None: absent, or no usable keyring."""
        backend = self._keyring()
        if backend is None:
            return None
        try:
            secret: str | None = self._call("read", key, functools.partial(backend.get_password, self.service, item))
        except _KeyringUnavailable:
            return None
        return secret

    # -- TokenStore --

    def load(self, key: str) -> Token | None:
        # The file copy, when there is one, is the newer (see the module docstring).
        stored = self.fallback.load(key)
        if stored is not None:
            return stored
        secret = self._read_item(key, key)
        if secret is None:
            return None
        try:
            return decode_token(secret.encode("utf-8"))
        except NewerFormatError as newer:
            logger.warning(
                "keyring entry for key %s has format version %s, newer than this tokensmith understands; ignored",
                short_key(key),
                newer.version,
            )
        except Exception as error:
            logger.warning("keyring entry for key %s is unreadable (%s); ignored", short_key(key), type(error).__name__)
        return None

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
            current = self._call("read", key, functools.partial(backend.get_password, self.service, key))
            if current != secret:
                self._call("write", key, functools.partial(backend.set_password, self.service, key, secret))
        except _KeyringUnavailable:
            self.fallback.save(key, token)
            return
        # A copy left in the fallback (an earlier oversize or failed write) would now be stale: remove it.
        self.fallback.discard(key)

    def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
        with self.lock(key):
            removed = False
            backend = self._keyring()
            if backend is not None:
                try:
                    secret = self._call("read", key, functools.partial(backend.get_password, self.service, key))
                    if secret is not None and (refresh_token is None or _refresh_token_of(secret) == refresh_token):
                        self._call("delete", key, functools.partial(backend.delete_password, self.service, key))
                        removed = True
                except _KeyringUnavailable:
                    pass
            if self.fallback.delete(key, refresh_token=refresh_token):
                removed = True
            return removed

    def lock(self, key: str) -> AbstractContextManager[object]:
        """The fallback ``FileStore``'s lock: keyrings have none."""
        return self.fallback.lock(key)

    # -- DPoP key slot: a keyring item of its own (``<key>.dpop``), or the fallback's key file --

    def load_key(self, key: str) -> str | None:
        stored = self.fallback.load_key(key)
        return stored if stored is not None else self._read_item(key, _key_item(key))

    def save_key(self, key: str, jwk: str) -> None:
        backend = self._keyring()
        if backend is None or _secret_size(jwk) > self.max_secret_bytes:
            self.fallback.save_key(key, jwk)
            return
        try:
            self._call("write", key, functools.partial(backend.set_password, self.service, _key_item(key), jwk))
        except _KeyringUnavailable:
            self.fallback.save_key(key, jwk)
            return
        self.fallback.delete_key(key)  # an older copy in the fallback would shadow this one

    def delete_key(self, key: str) -> bool:
        removed = False
        backend = self._keyring()
        if backend is not None:
            item = _key_item(key)
            try:
                if self._call("read", key, functools.partial(backend.get_password, self.service, item)) is not None:
                    self._call("delete", key, functools.partial(backend.delete_password, self.service, item))
                    removed = True
            except _KeyringUnavailable:
                pass
        return self.fallback.delete_key(key) or removed

    # -- LeasingStore: the fallback's, like the lock --

    def claim(self, key: str, owner: str, kind: str, ttl: float) -> Lease:
        return self.fallback.claim(key, owner, kind, ttl)

    def release(self, key: str, owner: str) -> None:
        self.fallback.release(key, owner)

    def current_lease(self, key: str) -> Lease | None:
        return self.fallback.current_lease(key)

    def _remove_from_keyring(self, backend: KeyringBackend, key: str) -> None:
        try:
            if self._call("read", key, functools.partial(backend.get_password, self.service, key)) is not None:
                self._call("delete", key, functools.partial(backend.delete_password, self.service, key))
        except _KeyringUnavailable:
            pass


def _key_item(key: str) -> str:
    """The keyring user name of the DPoP key kept for ``key`` (a separate item from the token's)."""
    return key + ".dpop"


def _secret_size(secret: str) -> int:
    """What the backend will count: Windows Credential Manager stores UTF-16, the others UTF-8."""
    return len(secret.encode("utf-16-le" if sys.platform == "win32" else "utf-8"))


def _refresh_token_of(secret: str) -> str | None:
    try:
        return decode_token(secret.encode("utf-8")).refresh_token
    except Exception:
        return None


def _time_boxed(function: Callable[[], _T], timeout: float, name: str) -> _T:
    """Run ``function`` in a daemon thread and wait at most ``timeout`` seconds for it: its result, its
    exception, or ``_NoAnswer``. A thread that hangs (a stuck D-Bus, an unanswered prompt) is abandoned; being a
    daemon it never delays interpreter exit."""
    results: list[_T] = []
    errors: list[Exception] = []
    done = threading.Event()

    def run() -> None:
        try:
            results.append(function())
        except Exception as error:
            errors.append(error)
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    if not done.wait(min(timeout, threading.TIMEOUT_MAX)):
        raise _NoAnswer
    if errors:
        raise errors[0]
    if not results:
        raise RuntimeError("the keyring call ended without a result")
    return results[0]


def _probe(service: str, timeout: float) -> tuple[KeyringBackend | None, str]:
    """Find the configured backend and read one entry, time-boxed to ``timeout`` seconds.
    Returns ``(backend, "")`` when usable, else ``(None, reason)``."""
    try:
        return _time_boxed(functools.partial(_probe_now, service), timeout, "tokensmith-keyring-probe")
    except _NoAnswer:
        return None, f"the keyring did not answer within {timeout:g} s"
    except Exception as error:
        return None, _describe(error)


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
