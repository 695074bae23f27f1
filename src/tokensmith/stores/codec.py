"""The stores' data formats, defined once: a token in a file or a keyring secret, and a renewal lease.

A token file (``FileStore``) and a keyring secret (``KeyringStore``) hold the same JSON document,
``{"version": 1, "token": Token.to_dict()}``, so a token can move between the two without conversion.
``decode_token`` raises on anything this module did not write (the caller decides whether to quarantine it),
and ``NewerFormatError`` for a document written by a newer tokensmith (left alone, never quarantined).

A lease file (``FileStore``) holds ``{"version": 1, "lease": {"owner", "kind", "expires_at", "pid", "host"}}``,
plus ``started`` (the claimant's process start time) where the OS tells it; older readers ignore it.

Store keys are file names, so ``check_key`` restricts them; a log line may name a key only by ``short_key``.
"""

from __future__ import annotations

import json
import math
import re

from ..token import Token
from ._format import FORMAT_VERSION, MAX_DOCUMENT_BYTES, NewerFormatError, envelope, token_fields
from .base import Lease

__all__ = [
    "FORMAT_VERSION",
    "LEASE_FORMAT_VERSION",
    "MAX_DOCUMENT_BYTES",
    "MAX_LEASE_BYTES",
    "NewerFormatError",
    "check_key",
    "decode_lease",
    "decode_token",
    "encode_lease",
    "encode_token",
    "short_key",
]

#: The ``version`` member of every lease document this module writes.
LEASE_FORMAT_VERSION = 1
#: A lease document larger than this is not something we wrote.
MAX_LEASE_BYTES = 64 * 1024

_KEY_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199}")


def check_key(key: str) -> str:
    """``key`` itself if it is safe as a file name (1-200 characters of ``[A-Za-z0-9_.-]``, not starting with
    ``.``, no ``..``); ``ValueError`` otherwise."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key) or ".." in key:
        raise ValueError("a store key must be 1-200 characters of [A-Za-z0-9_.-], not starting with '.'")
    return key


def short_key(key: str) -> str:
    """What a log line may say about a key: its first 12 characters (keys are hashes, never secrets)."""
    return key[:12]


def encode_token(token: Token) -> bytes:
    """The document for ``token``: canonical JSON (sorted keys, no spaces), ASCII, one trailing newline."""
    document = {"version": FORMAT_VERSION, "token": token.to_dict()}
    return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def decode_token(data: bytes) -> Token:
    """Parse a document. Raises ``NewerFormatError`` for a newer format, another exception for anything else
    that is not a document this module wrote."""
    return Token.from_dict(token_fields(data))


def encode_lease(lease: Lease) -> bytes:
    """The lease document: canonical JSON, one trailing newline."""
    fields = {
        "owner": lease.owner,
        "kind": lease.kind,
        "expires_at": lease.expires_at,
        "pid": lease.pid,
        "host": lease.host,
    }
    if lease.started is not None:
        fields["started"] = lease.started
    document = {"version": LEASE_FORMAT_VERSION, "lease": fields}
    return (json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def decode_lease(data: bytes) -> Lease:
    """Parse a lease document; raises on anything malformed (the caller treats it as "no lease").

    A newer ``version`` is read too, as long as the five members are there and well-typed: a newer tokensmith
    renewing the same key must still keep this one from renewing at the same time."""
    document, version = envelope(data, MAX_LEASE_BYTES)
    if not isinstance(version, int) or isinstance(version, bool) or version < LEASE_FORMAT_VERSION:
        raise ValueError("unknown format version")
    fields = document.get("lease")
    if not isinstance(fields, dict):
        raise TypeError("lease is not a JSON object")
    owner, kind, expires_at = fields.get("owner"), fields.get("kind"), fields.get("expires_at")
    pid, host = fields.get("pid"), fields.get("host")
    if not isinstance(owner, str) or not owner or not isinstance(kind, str) or not kind or not isinstance(host, str):
        raise TypeError("owner, kind and host must be strings")
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or not math.isfinite(expires_at):
        raise TypeError("expires_at must be a finite number")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise TypeError("pid must be a positive integer")
    started = fields.get("started")
    if started is not None and (isinstance(started, bool) or not isinstance(started, int) or started < 0):
        raise TypeError("started must be a non-negative integer")
    return Lease(owner=owner, kind=kind, expires_at=float(expires_at), pid=pid, host=host, started=started)
