"""The file store's light half: where token files live and how one is opened safely, stdlib only.

Shared by ``FileStore`` and the command line's cached-token path, which reads a token file before anything
heavier is imported (kubectl and git run it on every call).
"""

from __future__ import annotations

import os
import stat
import sys

_POSIX = os.name == "posix"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
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


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "an unknown kind of file"


class _NotRegularFile(Exception):
    def __init__(self, path: str, mode: int) -> None:
        self.path = path
        self.kind = _kind_of(mode)
        super().__init__(f"{path} is {self.kind}, not a regular file")


def _open_regular(path: str, flags: int) -> int:
    """Open ``path`` only if it is a regular file (or, with ``O_CREAT``, absent).

    ``lstat`` first, so a device or FIFO is never even opened; then ``O_NOFOLLOW | O_NONBLOCK`` and ``fstat``,
    so a FIFO or symlink swapped in between can neither block us nor redirect us. Raises ``_NotRegularFile``,
    ``FileNotFoundError`` (without ``O_CREAT``) or another ``OSError``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(st.st_mode):
            raise _NotRegularFile(path, st.st_mode)
    fd = os.open(path, flags | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _NotRegularFile(path, st.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private_file(path: str, max_bytes: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file owned by the current user and readable; None if it is
    missing, not a regular file, someone else's or unreadable (the caller may then take the slow, logging path).
    Never blocks on a FIFO and never follows a symlink."""
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except (OSError, _NotRegularFile):
        return None
    try:
        if not _owned_by_current_user(os.fstat(fd)):
            return None
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
