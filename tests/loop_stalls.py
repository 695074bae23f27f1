"""How much of the event loop each step that ran tokensmith code used.

asyncio's debug mode reports steps slower than ``loop.slow_callback_duration`` in wall time. On a shared machine
(four test workers and the IdP on two cores) wall time mostly measures who else got the CPU, so a test asserting
it would fail at random. ``StallMonitor`` wraps every step as debug mode does and records, for tokensmith's
steps, the CPU time the loop's thread spent in it (``time.thread_time``) next to the wall time. CPU time is what
tokensmith's own work costs the loop; blocking calls (which cost wall time, not CPU) are ruled out separately, by
checking which thread every store call and the HTTP client's construction run on.

A step is tokensmith's when its task's coroutine, or its callback, is tokensmith code.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import tokensmith

PACKAGE = str(Path(tokensmith.__file__).resolve().parent)


@dataclass(frozen=True)
class Step:
    cpu: float  # seconds of the loop thread's CPU time
    wall: float
    what: str


class StallMonitor:
    """``with StallMonitor() as monitor: asyncio.run(...)``; then ``monitor.slowest()`` of tokensmith's steps."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._original: Callable[[asyncio.events.Handle], None] | None = None

    def __enter__(self) -> StallMonitor:
        original = self._original = asyncio.events.Handle._run
        steps = self.steps

        def _run(handle: asyncio.events.Handle) -> None:
            what = _tokensmith_step(handle)
            if what is None:
                original(handle)
                return
            start, cpu = time.monotonic(), time.thread_time()
            original(handle)
            steps.append(Step(time.thread_time() - cpu, time.monotonic() - start, what))

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]

    def slowest(self) -> Step:
        return max(self.steps, key=lambda step: step.cpu)


def _tokensmith_step(handle: asyncio.events.Handle) -> str | None:
    callback: Any = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None)
        if code is not None and code.co_filename.startswith(PACKAGE):
            return f"task {owner.get_name()}: {getattr(coro, '__qualname__', coro)}"
        return None
    function = getattr(callback, "__func__", callback)
    code = getattr(function, "__code__", None)
    if code is not None and code.co_filename.startswith(PACKAGE):
        return f"callback {getattr(function, '__qualname__', function)}"
    return None


class ThreadNotes:
    """A store mixin that notes the thread of every call (the event loop's must never appear)."""

    threads: set[str]

    def _note(self) -> None:
        if not hasattr(self, "threads"):
            self.threads = set()
        self.threads.add(threading.current_thread().name)

    def load(self, key: str) -> tokensmith.Token | None:
        self._note()
        return super().load(key)  # type: ignore[misc, no-any-return]

    def save(self, key: str, token: tokensmith.Token) -> None:
        self._note()
        super().save(key, token)  # type: ignore[misc]

    def claim(self, key: str, owner: str, kind: str, ttl: float) -> tokensmith.Lease:
        self._note()
        return super().claim(key, owner, kind, ttl)  # type: ignore[misc, no-any-return]


class ThreadNotingMemoryStore(ThreadNotes, tokensmith.MemoryStore):
    pass


class ThreadNotingFileStore(ThreadNotes, tokensmith.FileStore):
    pass
