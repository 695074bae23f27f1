"""Logging the warnings the protocol core returns as data (it logs nothing itself)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

logger = logging.getLogger("tokensmith.protocol")

_seen: set[str] = set()
_guard = threading.Lock()


def log_protocol_warnings(warnings: Iterable[str]) -> None:
    """Each distinct warning at WARNING once per process, then at DEBUG: a server quirk is news once."""
    for text in warnings:
        with _guard:
            first = text not in _seen
            _seen.add(text)
        (logger.warning if first else logger.debug)("%s", text)
