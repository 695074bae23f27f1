"""``FileStore``: one 0600 JSON file per key in a 0700 per-user directory; atomic writes, cross-process locks.

Why each piece is here (IDP-QUIRKS, "Caches shared by several processes"):

- **Atomic writes.** A token is written to a temporary file in the same directory (created ``O_EXCL``, 0600),
  fsynced, then renamed over the old file with ``os.replace`` and the directory fsynced. A reader sees the old
  token or the new one, never a mix, even if the writer is killed halfway (C26). A failed write (disk full,
  read-only file system) removes its temporary file, leaves the previous token file untouched and raises
  ``StoreError``.
- **Writes only when something changed.** Saving exactly the bytes already stored is a no-op (so saving an
  unchanged token works even on a read-only file system).
- **Never crash on a bad file, never block on one.** A missing file is "no token"; a corrupt one is moved aside
  to ``<key>.json.corrupt-<unix-ts>`` (evidence kept, never deleted) and treated as "no token"; a file owned by
  another user is ignored; group/other permission bits are removed. Anything that is not a regular file where a
  token, lock or temporary file belongs (a FIFO, a directory, a device, a socket, a symlink) is refused without
  being opened for reading or writing: files are opened ``O_NOFOLLOW | O_NONBLOCK`` after an ``lstat`` and
  checked again with ``fstat``, so a FIFO can never block a read. ``load`` logs one warning per case and returns
  None (C10: never a token value, only a short key prefix); ``save``, ``delete`` and ``lock`` raise
  ``StoreError``, whose message names the path and says what to do.
- **Read-only is a state, not a crash.** On a read-only directory or file system ``load`` still serves the
  stored token; ``save`` (of a changed token) and ``lock`` raise ``StoreError``, so a caller can keep using the
  token it has without coordination.
- **A private directory, or none.** The token directory and every missing parent are created 0700 whatever the
  umask. An existing directory with group/other bits is tightened to 0700 (one warning); one that is owned by
  another user, or writable by group/others and cannot be tightened, is refused: ``load`` warns and returns
  None, ``save`` and ``lock`` raise ``StoreError``.
- **Renewal leases.** ``claim``/``release``/``current_lease`` (``LeasingStore``) keep a lease in
  ``<key>.lease``: JSON, 0600, written atomically like a token file (claims and releases under ``lock(key)``),
  refused the same way when it is not a regular file. An unreadable or corrupt lease counts as no lease and is
  replaced by the next claim. ``delete`` of a token leaves its lease alone.
- **Locks.** ``lock(key)`` is exclusive across threads *and* processes, re-entrant for the thread that holds it
  (the client calls ``delete`` while holding it). Processes exclude each other with ``filelock`` on a
  dedicated ``<key>.lock`` file (checked to be a regular file before ``filelock`` opens it); threads of one
  process with a per-path ``threading.RLock`` shared by every ``FileStore`` on that directory. The
  ``filelock`` object is only ever touched by the thread holding the ``RLock``, so its own thread semantics
  (``thread_local``, which changed between releases) do not matter.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .._warnings import RepeatedWarnings
from ..exceptions import StoreError, StoreLockTimeout
from ..token import Token
from ._fs import (
    _O_BINARY,
    _O_CLOEXEC,
    _O_NOFOLLOW,
    _POSIX,
    _current_uid,
    _kind_of,
    _loose_bits,
    _NotRegularFile,
    _open_regular,
    _owned_by_current_user,
    default_directory,
)
from .base import Lease, check_claim, new_lease
from .codec import (
    FORMAT_VERSION,
    MAX_DOCUMENT_BYTES,
    MAX_LEASE_BYTES,
    NewerFormatError,
    check_key,
    decode_lease,
    decode_token,
    encode_lease,
    encode_token,
    short_key,
)

if TYPE_CHECKING:
    import filelock

__all__ = ["FORMAT_VERSION", "FileStore", "StoreError", "StoreLockTimeout", "default_directory"]

logger = logging.getLogger("tokensmith.stores")

#: A token file larger than this is not something we wrote: it is treated as corrupt.
MAX_FILE_BYTES = MAX_DOCUMENT_BYTES
#: A DPoP key file larger than this is not a key we wrote (an RSA-4096 private JWK is about 3.2 KB).
MAX_KEY_BYTES = 64 * 1024
#: Temporary files older than this (seconds) belong to a killed writer and may be removed.
STALE_TEMP_AGE = 300.0

_TEMP_RE = re.compile(r"\.(?P<key>[A-Za-z0-9_.\-]+)\.(?:json|lease)\.[0-9a-f]+\.tmp")
_GROUP_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH


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


# --- refusing what is not ours to touch --------------------------------------------------------------------


def _refuse_non_regular(path: str, what: str) -> None:
    """``StoreError`` if something other than a regular file sits at ``path`` (which we are about to replace)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise _store_error(f"check the {what}", path, error) from error
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"the {what} {path} is {_kind_of(st.st_mode)}, not a regular file: remove it")


_NOT_YOURS = "the token directory must belong to you and be writable by you (mode 0700)"
_ADVICE = {
    errno.EROFS: "the file system is read-only: stored tokens can still be read, but nothing can be saved or "
    "locked here; give FileStore a writable directory",
    errno.EACCES: _NOT_YOURS,
    errno.EPERM: _NOT_YOURS,
    errno.ENOSPC: "no space left on the device: free some space (a previously stored token is untouched)",
    errno.ELOOP: "a symbolic link is in the way: remove it",
    errno.EISDIR: "a directory is in the way: remove it",
    errno.ENOTDIR: "a part of the path is not a directory: fix the path or give FileStore another directory",
    errno.ENAMETOOLONG: "the path is too long: give FileStore a shorter directory",
    errno.ENOSYS: "the file system does not support file locks (flock): tokens can still be read and saved, but "
    "processes cannot coordinate renewals here; give FileStore a directory on a local file system",
}
if hasattr(errno, "EDQUOT"):
    _ADVICE[errno.EDQUOT] = "disk quota exceeded: free some space (a previously stored token is untouched)"


def _store_error(action: str, path: str, error: OSError) -> StoreError:
    """A ``StoreError`` that names the path, the reason and what to do (never anything read from a file)."""
    reason = error.strerror or type(error).__name__
    advice = _ADVICE.get(error.errno or 0, "check the path and its permissions")
    return StoreError(f"cannot {action} {path}: {reason}; {advice}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _prepare_lock_file(path: str) -> None:
    """Create the lock file, or check the existing one, before ``filelock`` opens it: some ``filelock`` releases
    open it without ``O_NONBLOCK`` (a FIFO there would hang) or retry a refused open until the timeout."""
    try:
        fd = _open_regular(path, os.O_RDWR | os.O_CREAT)
    except _NotRegularFile as refused:
        raise StoreError(f"the lock file {path} is {refused.kind}, not a regular file: remove it") from None
    except OSError as error:
        raise _store_error("open the lock file", path, error) from error
    try:
        st = os.fstat(fd)
        if _POSIX and _owned_by_current_user(st) and stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)  # a umask without owner bits would lock us out of our own lock file
    except OSError:
        pass
    finally:
        os.close(fd)


def _make_private_directories(directory: str) -> None:
    """Create ``directory`` and every missing parent 0700 whatever the umask (``os.makedirs`` gives its mode to
    the leaf only; the parents get the umask's default, often 0755)."""
    missing: list[str] = []
    current = directory
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # created meanwhile by another process; the leaf is checked by the caller
        except OSError as error:
            raise _store_error("create the token directory", path, error) from error
        if _POSIX:
            try:
                os.chmod(path, 0o700)  # the umask may have removed owner bits the next mkdir needs
            except OSError as error:
                raise _store_error("set the mode of the token directory", path, error) from error


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
            # fallback_to_soft=False: where flock is missing (some NFS, FUSE and SMB mounts), filelock would switch
            # to an existence lock, which our own pre-created lock file holds forever (and a killed holder's too):
            # every lock would wait lock_timeout. Without flock, say so at once instead (ENOSYS: StoreError).
            try:
                self._file_lock = filelock.FileLock(self.path, mode=0o600, thread_local=False, fallback_to_soft=False)
            except TypeError:  # filelock < 3.30 has no soft fallback: it raises NotImplementedError instead
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

                _prepare_lock_file(self.path)
                remaining = -1.0 if forever else max(0.0, deadline - time.monotonic())
                try:
                    file_lock.acquire(timeout=remaining)
                except filelock.Timeout:
                    raise StoreLockTimeout(
                        f"lock {self.path} still held by another process after {timeout:g} s"
                    ) from None
                except NotImplementedError:  # filelock < 3.30 on a file system without flock
                    raise _store_error("lock", self.path, OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))) from None
                except OSError as error:
                    raise _store_error("lock", self.path, error) from error
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
        self._refusal_warned = False
        # One command reads a file more than once (the fast path, the re-read under the store lock), and a
        # service reads it on every call: a warning about a file is said once, then at debug for a while.
        self._warn = RepeatedWarnings(logger)

    def __repr__(self) -> str:
        return f"FileStore({self.directory!r})"

    # -- paths --

    def path_for(self, key: str) -> str:
        """The token file for ``key``."""
        return os.path.join(self.directory, check_key(key) + ".json")

    def _lock_path(self, key: str) -> str:
        return os.path.join(os.path.realpath(self.directory), check_key(key) + ".lock")

    def _lease_path(self, key: str) -> str:
        return os.path.join(self.directory, check_key(key) + ".lease")

    def _key_path(self, key: str) -> str:
        """The DPoP private key for ``key`` (RFC 9449): its own 0600 file, never inside the token file."""
        return os.path.join(self.directory, check_key(key) + ".dpop")

    # -- directory --

    def _ensure_directory(self, *, create: bool) -> bool:
        """True if the directory exists and may hold tokens (creating it and its missing parents 0700 when
        asked), False if it does not exist; ``StoreError`` if it must not be used. Checked once per store."""
        if self._checked_directory and (not create or os.path.isdir(self.directory)):
            return True
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            if not create:
                return False
            _make_private_directories(self.directory)
            try:
                st = os.stat(self.directory)
            except OSError as error:
                raise _store_error("use the token directory", self.directory, error) from error
        except OSError as error:
            raise _store_error("use the token directory", self.directory, error) from error
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(
                f"token directory {self.directory} is {_kind_of(st.st_mode)}, not a directory: remove it or give "
                "FileStore another directory"
            )
        uid = _current_uid()
        if uid is not None and st.st_uid != uid:
            # Another user could read our tokens there, or plant theirs: never use it.
            raise StoreError(
                f"token directory {self.directory} is owned by uid {st.st_uid}, not by the current user "
                f"(uid {uid}); tokens are only kept in a directory of your own: give FileStore another directory"
            )
        if loose := _loose_bits(st.st_mode):
            try:
                os.chmod(self.directory, 0o700)
            except OSError as error:
                if loose & _GROUP_OTHER_WRITE:
                    # Others could swap token files under us: refuse rather than warn.
                    raise StoreError(
                        f"token directory {self.directory} is writable by group/others (mode "
                        f"{stat.S_IMODE(st.st_mode):03o}) and could not be tightened ({error.strerror}): run "
                        f"'chmod 700 {self.directory}' or give FileStore another directory"
                    ) from error
                # Only readable: token files are 0600 anyway, so the directory can still be used.
                logger.warning(
                    "token directory %s is readable by group/others (mode %03o) and could not be tightened: %s",
                    self.directory,
                    stat.S_IMODE(st.st_mode),
                    error.strerror,
                )
            else:
                logger.warning(
                    "token directory %s was accessible to group/others (mode %03o); tightened to 0700",
                    self.directory,
                    stat.S_IMODE(st.st_mode),
                )
        self._checked_directory = True
        return True

    def _readable_directory(self) -> bool:
        """``_ensure_directory(create=False)`` for readers, which never raise: a refusal is logged (one warning
        per store) and reads as "no token"."""
        try:
            return self._ensure_directory(create=False)
        except StoreError as error:
            first, self._refusal_warned = not self._refusal_warned, True
            (logger.warning if first else logger.debug)("%s; no token loaded from it", error)
            return False

    # -- TokenStore --

    def load(self, key: str) -> Token | None:
        path = self.path_for(key)
        if not self._readable_directory():
            return None
        read = _read_owned(path, "token file", key, MAX_FILE_BYTES, tighten=True, warn=self._warn)
        if read is None:
            return None
        data, st = read
        try:
            return decode_token(data)
        except NewerFormatError as newer:
            self._warn(
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
        self._write_atomically(path, data, what="token file")
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
            removed = self._unlink(path, key, what="token file")
        if removed:
            logger.debug("token for key %s deleted", short_key(key))
        return removed

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Exclusive across threads and processes; re-entrant for the holding thread. Waits at most
        ``lock_timeout`` seconds (a negative or infinite value waits forever), then raises ``StoreLockTimeout``.
        Raises ``StoreError`` when the lock file cannot be created or opened for writing (read-only directory,
        something other than a regular file in its place): the caller then knows it cannot coordinate."""
        lock_path = self._lock_path(key)
        self._ensure_directory(create=True)
        path_lock = _path_lock(lock_path)
        path_lock.acquire(self.lock_timeout)
        try:
            yield
        finally:
            path_lock.release()

    # -- DPoP key slot --

    def load_key(self, key: str) -> str | None:
        """The stored DPoP private key (a private JWK as JSON), or None."""
        if not self._readable_directory():
            return None
        read = _read_owned(self._key_path(key), "DPoP key file", key, MAX_KEY_BYTES, tighten=True, warn=self._warn)
        if read is None:
            return None
        data, _ = read
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            self._warn("DPoP key file for key %s is unreadable; ignored", short_key(key))
            return None
        return text.strip() or None

    def save_key(self, key: str, jwk: str) -> None:
        """Write the DPoP private key to ``<key>.dpop`` (0600, atomically), apart from the token file."""
        self._ensure_directory(create=True)
        self._write_atomically(self._key_path(key), jwk.encode("ascii") + b"\n", what="DPoP key file")
        logger.debug("DPoP key for key %s saved", short_key(key))

    def delete_key(self, key: str) -> bool:
        try:
            if not self._ensure_directory(create=False):
                return False
        except StoreError:
            return False
        return self._unlink(self._key_path(key), key, what="DPoP key file")

    # -- LeasingStore --

    def claim(self, key: str, owner: str, kind: str, ttl: float) -> Lease:
        """See ``LeasingStore.claim``. The lease is ``<key>.lease``, written like a token file."""
        check_claim(owner, kind, ttl)
        path = self._lease_path(key)
        with self.lock(key):
            now = time.time()
            current = self._read_lease(key, path)
            if current is not None and current.owner != owner and current.is_live(now):
                logger.debug(
                    "key %s is leased by pid %d on %s (%s)", short_key(key), current.pid, current.host, current.kind
                )
                return current
            lease = new_lease(owner, kind, ttl, now)
            self._write_atomically(path, encode_lease(lease), what="lease file")
            logger.debug("lease on key %s claimed (%s, %g s)", short_key(key), kind, ttl)
            return lease

    def release(self, key: str, owner: str) -> None:
        """See ``LeasingStore.release``."""
        path = self._lease_path(key)
        if not self._readable_directory():
            return
        current = self._read_lease(key, path)
        if current is None or current.owner != owner:
            # Only ``owner`` ever writes a lease naming ``owner``, so this cannot change under us: no lock needed
            # (and none taken, so releasing nothing works on a read-only store).
            return
        with self.lock(key):
            current = self._read_lease(key, path)  # another owner may have taken over an expired lease meanwhile
            if current is not None and current.owner == owner:
                self._unlink(path, key, what="lease file")
                logger.debug("lease on key %s released", short_key(key))

    def current_lease(self, key: str) -> Lease | None:
        """See ``LeasingStore.current_lease``."""
        path = self._lease_path(key)
        if not self._readable_directory():
            return None
        return self._read_lease(key, path)

    def _read_lease(self, key: str, path: str) -> Lease | None:
        """The lease in ``path``; None (with a warning) for anything unreadable: a lease that cannot be read
        protects nothing, and the next claim replaces it."""
        read = _read_owned(path, "lease file", key, MAX_LEASE_BYTES, tighten=False, warn=self._warn)
        if read is None:
            return None
        data, _st = read
        try:
            return decode_lease(data)
        except Exception as error:
            self._warn(
                "lease file for key %s is unreadable (%s); treated as no lease", short_key(key), type(error).__name__
            )
            return None

    # -- helpers --

    def discard(self, key: str) -> bool:
        """Remove the entry without locking or comparing (for a store that moved the token elsewhere)."""
        try:
            if not self._ensure_directory(create=False):
                return False
        except StoreError:
            return False  # a directory we refuse to use holds nothing of ours
        return self._unlink(self.path_for(key), key, what="token file")

    def _write_atomically(self, path: str, data: bytes, *, what: str) -> None:
        """Temporary file (``O_EXCL``, 0600) + write + fsync + rename over ``path`` + directory fsync.

        On any failure the temporary file is removed and ``path`` is untouched; an ``OSError`` becomes a
        ``StoreError`` naming ``path``."""
        _refuse_non_regular(path, what)
        tmp = os.path.join(self.directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY, 0o600)
        except OSError as error:
            raise _store_error(f"write the {what}", path, error) from error
        try:
            try:
                if _POSIX:
                    os.fchmod(fd, 0o600)  # the umask may have removed owner bits; never adds any
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            _replace(tmp, path)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(error, OSError):
                raise _store_error(f"write the {what}", path, error) from error
            raise
        _fsync_directory(self.directory)

    def _unlink(self, path: str, key: str, *, what: str) -> bool:
        """Remove the regular file at ``path``; anything else there is left alone with a warning (it is not
        ours: ``load`` ignores it too)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise _store_error(f"delete the {what}", path, error) from error
        if not stat.S_ISREG(st.st_mode):
            self._warn(
                "%s for key %s is %s, not a regular file; left in place (remove it)",
                what,
                short_key(key),
                _kind_of(st.st_mode),
            )
            return False
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as error:
            raise _store_error(f"delete the {what}", path, error) from error
        _fsync_directory(self.directory)
        return True

    def _already_holds(self, path: str, data: bytes) -> bool:
        """Whether ``path`` is our own regular file with exactly ``data`` (tightening its mode if needed)."""
        try:
            fd = _open_regular(path, os.O_RDONLY)
        except (OSError, _NotRegularFile):
            return False
        try:
            st = os.fstat(fd)
            if not _owned_by_current_user(st) or st.st_size != len(data):
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
            self._warn(
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


def _read_owned(
    path: str, what: str, key: str, max_bytes: int, *, tighten: bool, warn: Callable[..., None]
) -> tuple[bytes, os.stat_result] | None:
    """The bytes (at most ``max_bytes + 1``) and stat of ``path`` if it is a regular file we own; None, with one
    warning saying why, for anything else (missing: no warning). ``tighten`` removes group/other bits."""
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except _NotRegularFile as refused:
        warn("%s for key %s is %s, not a regular file; ignored (remove it)", what, short_key(key), refused.kind)
        return None
    except OSError as error:
        # EACCES, ELOOP (a symlink swapped in after the lstat), ...: not ours to read.
        warn("%s for key %s cannot be opened (%s); ignored", what, short_key(key), error.strerror)
        return None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not _owned_by_current_user(st):
            warn("%s %s is owned by uid %d, not by the current user; ignored", what, path, st.st_uid)
            return None
        if tighten and _loose_bits(st.st_mode):
            try:
                os.fchmod(fd, 0o600)
                warn(
                    "%s for key %s was readable by group/others (mode %03o); tightened to 0600",
                    what,
                    short_key(key),
                    stat.S_IMODE(st.st_mode),
                )
            except OSError as error:
                warn(
                    "%s for key %s is readable by group/others and could not be tightened: %s",
                    what,
                    short_key(key),
                    error.strerror,
                )
        try:
            return handle.read(max_bytes + 1), st
        except OSError as error:
            warn("%s for key %s cannot be read (%s); ignored", what, short_key(key), error.strerror)
            return None


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
