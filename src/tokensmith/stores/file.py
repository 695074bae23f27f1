"""``FileStore``: one 0600 JSON file per key in a 0700 per-user directory; atomic writes, cross-process locks.

Why each piece is here (IDP-QUIRKS, "Caches shared by several processes"):

- **Atomic writes.** A token is written to a temporary file in the same directory (created ``O_EXCL``, 0600),
  flushed, fsynced, then renamed over the old file with ``os.replace`` and the directory fsynced. A reader
  sees the old token or the new one, never a mix, even if the writer is killed halfway (C26).
- **Writes only when something changed.** Saving exactly the bytes already stored is a no-op.
- **Never crash on a bad file.** A missing file is "no token"; a corrupt one is moved aside to
  ``<key>.json.corrupt-<unix-ts>`` (evidence kept, never deleted) and treated as "no token"; a file owned by
  another user is ignored; group/other permission bits are removed. Each case logs one warning (C10: never a
  token value, only a short key prefix).
- **Locks.** ``lock(key)`` is exclusive across threads *and* processes, re-entrant for the thread that holds it
  (the client calls ``delete`` while holding it). Processes exclude each other with ``filelock`` on a
  dedicated ``<key>.lock`` file; threads of one process with a per-path ``threading.RLock`` shared by every
  ``FileStore`` on that directory. The ``filelock`` object is only ever touched by the thread holding the
  ``RLock``, so its own thread semantics (``thread_local``, which changed between releases) do not matter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..exceptions import StoreError, StoreLockTimeout
from ..token import Token
from .codec import (
    FORMAT_VERSION,
    MAX_DOCUMENT_BYTES,
    NewerFormatError,
    check_key,
    decode_token,
    encode_token,
    short_key,
)

if TYPE_CHECKING:
    import filelock

__all__ = ["FORMAT_VERSION", "FileStore", "StoreError", "StoreLockTimeout", "default_directory"]

logger = logging.getLogger("tokensmith.stores")

#: A token file larger than this is not something we wrote: it is treated as corrupt.
MAX_FILE_BYTES = MAX_DOCUMENT_BYTES
#: Temporary files older than this (seconds) belong to a killed writer and may be removed.
STALE_TEMP_AGE = 300.0

_POSIX = os.name == "posix"
_TEMP_RE = re.compile(r"\.(?P<key>[A-Za-z0-9_.\-]+)\.json\.[0-9a-f]+\.tmp")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def default_directory() -> str:
    """``$XDG_CACHE_HOME/tokensmith/tokens`` or ``~/.cache/tokensmith/tokens``;
    on Windows ``%LOCALAPPDATA%\\tokensmith\\tokens``."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or ""
        # The XDG spec: a relative path is invalid and must be ignored.
        if not os.path.isabs(base):
            base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tokensmith", "tokens")


def _current_uid() -> int | None:
    """The effective user id, or None where ownership cannot be checked (Windows)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid() if geteuid is not None else None


def _owned_by_current_user(st: os.stat_result) -> bool:
    uid = _current_uid()
    return uid is None or st.st_uid == uid


def _loose_bits(mode: int) -> int:
    return stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO) if _POSIX else 0


def _fsync_directory(directory: str) -> None:
    """Make a rename durable. POSIX only; filesystems that refuse directory fsync are tolerated."""
    if not _POSIX:
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- the per-process lock registry -------------------------------------------------------------------------


class _PathLock:
    """Exclusive across threads (``RLock``) and processes (``filelock``) for one lock file; re-entrant."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0  # only read and written by the thread holding _thread_lock
        self._file_lock: filelock.BaseFileLock | None = None

    def _get_file_lock(self) -> filelock.BaseFileLock:
        if self._file_lock is None:
            try:
                import filelock
            except ImportError as error:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "FileStore.lock needs the 'filelock' package: pip install 'tokensmith[file]'"
                ) from error
            # thread_local=False: one shared state, touched only by the thread holding _thread_lock.
            self._file_lock = filelock.FileLock(self.path, mode=0o600, thread_local=False)
        return self._file_lock

    def acquire(self, timeout: float) -> None:
        forever = timeout < 0 or timeout == float("inf")
        deadline = time.monotonic() + (0.0 if forever else timeout)
        acquired = (
            self._thread_lock.acquire()
            if forever
            else self._thread_lock.acquire(timeout=min(timeout, threading.TIMEOUT_MAX))
        )
        if not acquired:
            raise StoreLockTimeout(f"lock {self.path} still held by another thread after {timeout:g} s")
        try:
            if self._depth == 0:
                file_lock = self._get_file_lock()  # imports filelock, or says how to install it
                import filelock

                remaining = -1.0 if forever else max(0.0, deadline - time.monotonic())
                try:
                    file_lock.acquire(timeout=remaining)
                except filelock.Timeout:
                    raise StoreLockTimeout(
                        f"lock {self.path} still held by another process after {timeout:g} s"
                    ) from None
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._file_lock is not None:
                self._file_lock.release()
        finally:
            self._thread_lock.release()


_registry_guard = threading.Lock()
_registry: dict[str, _PathLock] = {}


def _path_lock(path: str) -> _PathLock:
    with _registry_guard:
        lock = _registry.get(path)
        if lock is None:
            lock = _registry[path] = _PathLock(path)
        return lock


def _reset_registry_after_fork() -> None:  # pragma: no cover - runs in forked children
    # A forked child inherits neither the parent's threads nor its file locks: start afresh.
    global _registry_guard
    _registry_guard = threading.Lock()
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_registry_after_fork)


# --- the store ---------------------------------------------------------------------------------------------


class FileStore:
    """Tokens as ``<directory>/<key>.json`` (0600) in a 0700 per-user directory. See the module docstring."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, lock_timeout: float = 30.0) -> None:
        if lock_timeout != lock_timeout:  # NaN
            raise ValueError("lock_timeout must be a number of seconds")
        self.directory = os.path.abspath(
            os.path.expanduser(os.fspath(directory)) if directory is not None else default_directory()
        )
        self.lock_timeout = lock_timeout
        self._checked_directory = False
        self._swept_temp_files = False

    def __repr__(self) -> str:
        return f"FileStore({self.directory!r})"

    # -- paths --

    def path_for(self, key: str) -> str:
        """The token file for ``key``."""
        return os.path.join(self.directory, check_key(key) + ".json")

    def _lock_path(self, key: str) -> str:
        return os.path.join(os.path.realpath(self.directory), check_key(key) + ".lock")

    # -- directory --

    def _ensure_directory(self, *, create: bool) -> bool:
        """True if the directory exists (creating it 0700 when asked); tightens loose permissions once."""
        if self._checked_directory and (not create or os.path.isdir(self.directory)):
            return True
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            if not create:
                return False
            try:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                if _POSIX:
                    os.chmod(self.directory, 0o700)
                st = os.stat(self.directory)
            except OSError as error:
                raise StoreError(f"cannot create token directory {self.directory}: {error.strerror}") from error
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"token directory {self.directory} is not a directory")
        if not _owned_by_current_user(st):
            logger.warning(
                "token directory %s is owned by uid %d, not by the current user; tokens in it from other users "
                "are ignored",
                self.directory,
                st.st_uid,
            )
        elif loose := _loose_bits(st.st_mode):
            try:
                os.chmod(self.directory, 0o700)
                logger.warning(
                    "token directory %s was accessible to group/others (mode %03o); tightened to 0700",
                    self.directory,
                    stat.S_IMODE(st.st_mode),
                )
            except OSError as error:
                logger.warning(
                    "token directory %s is accessible to group/others (bits %03o) and could not be tightened: %s",
                    self.directory,
                    loose,
                    error.strerror,
                )
        self._checked_directory = True
        return True

    # -- TokenStore --

    def load(self, key: str) -> Token | None:
        path = self.path_for(key)
        if not self._ensure_directory(create=False):
            return None
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
        except FileNotFoundError:
            return None
        except OSError as error:
            # ELOOP: a symlink where a token file should be. EACCES, EISDIR, ...: not ours to read.
            logger.warning("token file for key %s cannot be opened (%s); ignored", short_key(key), error.strerror)
            return None
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                logger.warning("token file for key %s is not a regular file; ignored", short_key(key))
                return None
            if not _owned_by_current_user(st):
                logger.warning("token file %s is owned by uid %d, not by the current user; ignored", path, st.st_uid)
                return None
            if _loose_bits(st.st_mode):
                try:
                    os.fchmod(fd, 0o600)
                    logger.warning(
                        "token file for key %s was readable by group/others (mode %03o); tightened to 0600",
                        short_key(key),
                        stat.S_IMODE(st.st_mode),
                    )
                except OSError as error:
                    logger.warning(
                        "token file for key %s is readable by group/others and could not be tightened: %s",
                        short_key(key),
                        error.strerror,
                    )
            try:
                data = handle.read(MAX_FILE_BYTES + 1)
            except OSError as error:
                logger.warning("token file for key %s cannot be read (%s); ignored", short_key(key), error.strerror)
                return None
        try:
            return decode_token(data)
        except NewerFormatError as newer:
            logger.warning(
                "token file for key %s has format version %s, newer than this tokensmith understands; ignored",
                short_key(key),
                newer.version,
            )
            return None
        except Exception as error:
            self._quarantine(key, path, st, reason=type(error).__name__)
            return None

    def save(self, key: str, token: Token) -> None:
        path = self.path_for(key)
        data = encode_token(token)
        self._ensure_directory(create=True)
        if self._already_holds(path, data):
            logger.debug("token for key %s unchanged; not rewritten", short_key(key))
            return
        tmp = os.path.join(self.directory, f".{check_key(key)}.json.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY, 0o600)
        except OSError as error:
            raise StoreError(f"cannot write a token file in {self.directory}: {error.strerror}") from error
        try:
            with os.fdopen(fd, "wb") as handle:
                if _POSIX:
                    os.fchmod(fd, 0o600)  # the umask may have removed owner bits; never adds any
                handle.write(data)
                handle.flush()
                os.fsync(fd)
            _replace(tmp, path)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(error, OSError):
                raise StoreError(f"cannot write token file {path}: {error.strerror}") from error
            raise
        _fsync_directory(self.directory)
        logger.debug("token for key %s saved", short_key(key))
        if not self._swept_temp_files:
            self._swept_temp_files = True
            self._remove_stale_temp_files()

    def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
        path = self.path_for(key)
        if not self._ensure_directory(create=False):
            return False
        with self.lock(key):
            if refresh_token is not None:
                current = self.load(key)
                if current is None or current.refresh_token != refresh_token:
                    logger.debug("token for key %s not deleted: it holds another refresh token", short_key(key))
                    return False
            removed = self._unlink(path)
        if removed:
            logger.debug("token for key %s deleted", short_key(key))
        return removed

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Exclusive across threads and processes; re-entrant for the holding thread. Waits at most
        ``lock_timeout`` seconds (a negative or infinite value waits forever), then raises ``StoreLockTimeout``."""
        lock_path = self._lock_path(key)
        self._ensure_directory(create=True)
        path_lock = _path_lock(lock_path)
        path_lock.acquire(self.lock_timeout)
        try:
            yield
        finally:
            path_lock.release()

    # -- helpers --

    def discard(self, key: str) -> bool:
        """Remove the entry without locking or comparing (for a store that moved the token elsewhere)."""
        if not self._ensure_directory(create=False):
            return False
        return self._unlink(self.path_for(key))

    def _unlink(self, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise StoreError(f"cannot delete token file {path}: {error.strerror}") from error
        _fsync_directory(self.directory)
        return True

    def _already_holds(self, path: str, data: bytes) -> bool:
        """Whether ``path`` is our own regular file with exactly ``data`` (tightening its mode if needed)."""
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not _owned_by_current_user(st) or st.st_size != len(data):
                return False
            with os.fdopen(os.dup(fd), "rb") as handle:
                if handle.read(len(data) + 1) != data:
                    return False
            if _loose_bits(st.st_mode):
                os.fchmod(fd, 0o600)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def _quarantine(self, key: str, path: str, read_stat: os.stat_result, *, reason: str) -> None:
        """Move a corrupt file aside (never delete it) unless a writer has replaced it meanwhile."""
        base = f"{path}.corrupt-{int(time.time())}"
        target = base
        for n in range(1, 100):
            if not os.path.lexists(target):
                break
            target = f"{base}-{n}"
        try:
            current = os.lstat(path)
            if (current.st_dev, current.st_ino) != (read_stat.st_dev, read_stat.st_ino):
                logger.debug("corrupt token file for key %s was replaced meanwhile; left alone", short_key(key))
                return
            os.rename(path, target)
        except FileNotFoundError:
            return
        except OSError as error:
            logger.warning(
                "token file for key %s is unreadable (%s) and could not be moved aside: %s; ignored",
                short_key(key),
                reason,
                error.strerror,
            )
            return
        logger.warning("token file for key %s is unreadable (%s); moved aside to %s", short_key(key), reason, target)

    def _remove_stale_temp_files(self) -> None:
        """Remove temporary files left by writers killed more than ``STALE_TEMP_AGE`` seconds ago."""
        cutoff = time.time() - STALE_TEMP_AGE
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if not _TEMP_RE.fullmatch(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and _owned_by_current_user(st) and st.st_mtime < cutoff:
                    os.unlink(entry.path)
                    logger.debug("removed stale temporary file %s", entry.name)
            except OSError:
                continue


def _replace(source: str, target: str) -> None:
    """``os.replace``, retried briefly on Windows where a reader holding the target open blocks it."""
    for attempt in range(10):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if sys.platform != "win32" or attempt == 9:
                raise
            time.sleep(0.01 * (attempt + 1))
