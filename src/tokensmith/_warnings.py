"""Logging the warnings the protocol core returns as data (it logs nothing itself)."""

from __future__ import annotations

import logging
import threading
import time
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


class RepeatedWarnings:
    """``warn(message, *args)``: ``logger.warning``, unless this very warning was given through this object in the
    last ``interval`` seconds (then ``logger.debug``): for conditions met on every read (an unreadable file),
    said once, and again now and then while they last."""

    def __init__(self, logger: logging.Logger, interval: float = 300.0) -> None:
        self._logger = logger
        self._interval = interval
        self._at: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, message: str, *args: object) -> None:
        text = message % args
        now = time.monotonic()
        with self._lock:
            last = self._at.get(text)
            fresh = last is None or now - last >= self._interval
            if fresh:
                if len(self._at) >= 256:  # bounded: many keys' warnings cannot grow it without end
                    self._at.clear()
                self._at[text] = now
        (self._logger.warning if fresh else self._logger.debug)("%s", text)
