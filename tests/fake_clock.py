"""Injected time for client tests: a wall clock, a monotonic clock and a sleep that move only when the test says
(or when the code under test sleeps), so tests assert counts and orderings, never durations."""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall clock, monotonic clock and sleep in one. ``start`` is the wall-clock start (default: the real time,
    so server-issued expiries line up)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.mono = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds
