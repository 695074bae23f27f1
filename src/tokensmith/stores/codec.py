"""The stores' data formats, defined once: what a token looks like in a file or a keyring secret.

A token file (``FileStore``) and a keyring secret (``KeyringStore``) hold the same JSON document,
``{"version": 1, "token": Token.to_dict()}``, so a token can move between the two without conversion.
``decode_token`` raises on anything this module did not write (the caller decides whether to quarantine it),
and ``NewerFormatError`` for a document written by a newer tokensmith (left alone, never quarantined).

Store keys are file names, so ``check_key`` restricts them; a log line may name a key only by ``short_key``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..token import Token

__all__ = [
    "FORMAT_VERSION",
    "MAX_DOCUMENT_BYTES",
    "NewerFormatError",
    "check_key",
    "decode_token",
    "encode_token",
    "short_key",
]

#: The ``version`` member of every token document this module writes.
FORMAT_VERSION = 1
#: A document larger than this is not something we wrote: it is treated as corrupt.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024

_KEY_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199}")


class NewerFormatError(Exception):
    """The document has a format ``version`` newer than this tokensmith understands."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


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
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValueError("document too large")
    document: Any = json.loads(data.decode("utf-8"))
    if not isinstance(document, dict):
        raise TypeError("not a JSON object")
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise NewerFormatError(version)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ValueError("unknown format version")
    token = document.get("token")
    if not isinstance(token, dict):
        raise TypeError("token is not a JSON object")
    return Token.from_dict(token)
