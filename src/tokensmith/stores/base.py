"""The token store contract, and the optional renewal-lease capability.

A store maps a cache key (see ``cache_key``) to a ``Token``. The client calls ``lock(key)`` around every
renewal, then re-reads with ``load``: with a store shared by several processes (``FileStore``), exactly one of
them refreshes and the others find its result (C26: a rotated refresh token is never spent twice).

A store that is also a ``LeasingStore`` lets the client renew *without* holding the lock across the network
request: under the lock it claims a short-lived ``Lease`` ("process X on host H is renewing this key until T"),
releases the lock, does the request, saves, and releases the lease. Others that find a live lease wait for
the token instead of renewing too. A lease dies when it expires, or as soon as its process is gone (same
host only: a pid means nothing elsewhere), so a crashed renewer never blocks the others for long.

This module is imported by ``import tokensmith.stores``: standard library only.
"""

from __future__ import annotations

import math
import os
import socket
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._keys import cache_key as cache_key  # re-exported: the store key's home is a light module
from ..token import Token

#: The kinds of work a lease announces.
LEASE_KINDS = ("renew", "login")


@runtime_checkable
class TokenStore(Protocol):
    def load(self, key: str) -> Token | None:
        """The stored token, or None. Never raises for a missing or unreadable entry (it logs instead)."""

    def save(self, key: str, token: Token) -> None:
        """Store atomically: a reader sees the old token or the new one, never a mix. Raises ``StoreError``
        when the token cannot be stored (read-only, disk full); the previously stored token is then intact."""

    def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
        """Remove the entry. With ``refresh_token``, only if the stored token still holds that refresh token
        (compare-and-delete: never wipe a sibling process's freshly rotated token). True if removed."""

    def lock(self, key: str) -> AbstractContextManager[object]:
        """Exclusive across everyone sharing the store (threads, and processes for file-backed stores).
        Raises ``StoreLockTimeout`` after the store's wait limit, ``StoreError`` when the store cannot be locked
        at all (a read-only directory): ``load`` still works then, so a caller can keep serving what it has."""


@dataclass(frozen=True)
class Lease:
    """``owner`` (a random id chosen by the claimant) is doing ``kind`` for a key until ``expires_at``."""

    owner: str
    kind: str
    #: Wall clock (``time.time()``): leases are compared across processes, which share no monotonic clock.
    expires_at: float
    pid: int
    #: ``socket.gethostname()`` of the claimant.
    host: str
    #: When the claimant's process started, as the OS counts it (Linux: clock ticks since boot, from
    #: ``/proc/<pid>/stat``); None where unknown. Tells a reused pid from the claimant's.
    started: int | None = None

    def is_live(self, now: float) -> bool:
        """Not expired at ``now``, and its process not known to be gone (checked on the same host only)."""
        if not now < self.expires_at:  # written this way round so that a NaN is never live
            return False
        return self.host != socket.gethostname() or _process_exists(self.pid, self.started)


@runtime_checkable
class LeasingStore(Protocol):
    """An optional capability of a ``TokenStore``: renewal leases. The client uses it when present."""

    def claim(self, key: str, owner: str, kind: str, ttl: float) -> Lease:
        """Under ``lock(key)`` (re-entrant if the caller already holds it): if another owner holds a live
        lease, return that lease and write nothing; otherwise write (or renew) ours, expiring at now + ``ttl``,
        and return it. The caller won if ``claim(...).owner == owner``. Raises ``StoreError`` if the lease
        cannot be written (read-only, disk full), ``ValueError`` for a bad ``owner``, ``kind`` or ``ttl``."""

    def release(self, key: str, owner: str) -> None:
        """Remove the lease if it is still ours; a missing or foreign lease is left alone. Never raises for a
        missing one (``StoreError`` only for real I/O failures)."""

    def current_lease(self, key: str) -> Lease | None:
        """The lease on record, live or not; None if there is none (or it is unreadable)."""


@runtime_checkable
class KeyStore(Protocol):
    """An optional capability of a ``TokenStore``: a slot for the client's DPoP private key (RFC 9449), kept
    apart from the token (its own file, keyring item or dict entry), so a DPoP-bound refresh token can be used
    from a new process. A store without it keeps the key in memory only (the client warns once)."""

    def load_key(self, key: str) -> str | None:
        """The private JWK (JSON) stored for ``key``, or None."""

    def save_key(self, key: str, jwk: str) -> None:
        """Store the private JWK for ``key`` (replacing any). Raises ``StoreError`` when it cannot."""

    def delete_key(self, key: str) -> bool:
        """Remove the key for ``key``; True if there was one."""


def check_claim(owner: str, kind: str, ttl: float) -> None:
    """``ValueError`` unless the arguments of ``claim`` make sense (shared by every store)."""
    if not isinstance(owner, str) or not owner or len(owner) > 200 or not owner.isprintable():
        raise ValueError("a lease owner must be 1-200 printable characters")
    if kind not in LEASE_KINDS:
        raise ValueError(f"a lease kind must be one of {', '.join(LEASE_KINDS)}")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError("a lease ttl must be a positive number of seconds")


def new_lease(owner: str, kind: str, ttl: float, now: float) -> Lease:
    """The lease this process writes when it claims at ``now``."""
    pid = os.getpid()
    return Lease(
        owner=owner,
        kind=kind,
        expires_at=now + ttl,
        pid=pid,
        host=socket.gethostname(),
        started=_process_start(pid),
    )


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """The state letter and start time (clock ticks since boot) of ``pid`` from ``/proc/<pid>/stat``; None
    where there is no such file (no process by that pid, or no Linux-style ``/proc``) or it cannot be parsed."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read(4096).decode("ascii", "replace")
    except OSError:
        return None
    # "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses, so split after the last ')'.
    fields = text[text.rfind(")") + 1 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _process_start(pid: int) -> int | None:
    """When ``pid`` started (see ``Lease.started``), or None where that cannot be told."""
    if os.name != "posix":
        return None
    found = _proc_stat(pid)
    return None if found is None else found[1]


def _process_exists(pid: int, started: int | None = None) -> bool:
    """False only when the OS says there is no such process: none by that pid, a zombie (killed, not yet
    reaped by its parent) or, with ``started``, one that started at another time (the pid was reused).
    ``os.kill(pid, 0)`` only checks on POSIX; on Windows it would *terminate* the process, so there a lease
    simply lasts until it expires."""
    if os.name != "posix" or pid <= 0:
        return True
    if os.path.isdir("/proc/self") and pid < 2**32:
        found = _proc_stat(pid)
        if found is None:
            if not os.path.exists(f"/proc/{pid}"):
                return False
        else:
            state, start = found
            if state in ("Z", "X", "x"):
                return False
            if started is not None and start != started:
                return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:
        return True  # EPERM: it exists, as another user's process
    return True
