"""The token document's envelope, stdlib only: ``{"version": 1, "token": {...}}``.

Shared by the codec (which turns the inner object into a ``Token``) and the command line's cached-token path.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # not typing's: this module is on the command line's fast path
if TYPE_CHECKING:
    from typing import Any

#: The ``version`` member of every token document this module writes.
FORMAT_VERSION = 1
#: A document larger than this is not something we wrote: it is treated as corrupt.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


class NewerFormatError(Exception):
    """The document has a format ``version`` newer than this tokensmith understands."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def envelope(data: bytes, max_bytes: int) -> tuple[dict[str, Any], object]:
    """A store document as a JSON object, and its ``version`` member; raises on anything that is not one."""
    if len(data) > max_bytes:
        raise ValueError("document too large")
    document: Any = json.loads(data.decode("utf-8"))
    if not isinstance(document, dict):
        raise TypeError("not a JSON object")
    return document, document.get("version")


def token_fields(data: bytes) -> dict[str, Any]:
    """The token object of a document. Raises ``NewerFormatError`` for a newer format, another exception for
    anything else that is not a document tokensmith wrote."""
    document, version = envelope(data, MAX_DOCUMENT_BYTES)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise NewerFormatError(version)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ValueError("unknown format version")
    token = document.get("token")
    if not isinstance(token, dict):
        raise TypeError("token is not a JSON object")
    return token
