"""How much of the event loop each step that ran tokensmith code used.

asyncio's debug mode reports steps slower than ``loop.slow_callback_duration`` in wall time. On a shared machine
(four test workers and the IdP on two cores) wall time mostly measures who else got the CPU, so a test asserting
it would fail at random. ``StallMonitor`` wraps every step as debug mode does and records, for tokensmith's
steps, the CPU time the loop's thread spent in it (``time.thread_time``) next to the wall time. CPU time is what
tokensmith's own work costs the loop; blocking calls (which cost wall time, not CPU) are ruled out separately, by
checking which thread every store call and the HTTP client's construction run on.

A step is tokensmith's when its task's coroutine, or its callback, is tokensmith code.

A user's callable that blocks (a KMS signer, a credential source) is ``Slow``: it sleeps ``LATENCY`` and notes its
thread and how far a ``Ticker`` (a task ticking every 10 ms, run beside the work by ``run_ticking``) got meanwhile:
a count that cannot move while the loop's own thread is blocked.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

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


# --- a user's callable that blocks (a KMS round trip), and a ticker that shows whether the loop kept going ----------

#: A KMS round trip, simulated.
LATENCY = 0.2
T = TypeVar("T")


class Ticker:
    """Counts the ticks of a task that sleeps 10 ms in a loop on the event loop; knows the loop's thread."""

    def __init__(self) -> None:
        self.ticks = 0
        self.loop_thread: threading.Thread | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1


class Slow:
    """A user's callable (a KMS signer, a credential source) that takes ``LATENCY`` seconds, noting its thread and
    the ticker's progress meanwhile."""

    def __init__(self, ticker: Ticker, call: Callable[..., Any]) -> None:
        self._ticker = ticker
        self._call = call
        self.threads: list[threading.Thread] = []
        self.ticks_meanwhile: list[int] = []

    def __call__(self, *args: Any) -> Any:
        self.threads.append(threading.current_thread())
        before = self._ticker.ticks
        time.sleep(LATENCY)
        # A loaded or briefly paused machine may not have run the loop in those 200 ms (after a pause this thread
        # can wake first): give the ticker up to 10 s more. Called on the loop's own thread, no wait lets it tick,
        # so this proves no less.
        deadline = time.monotonic() + 10
        while self._ticker.ticks == before and time.monotonic() < deadline:
            time.sleep(0.01)
        self.ticks_meanwhile.append(self._ticker.ticks - before)
        return self._call(*args)

    def assert_off_loop(self, ticker: Ticker, calls: int, thread_prefix: str | None = "tokensmith-store") -> None:
        assert len(self.threads) == calls, self.threads
        assert ticker.loop_thread is not None
        assert all(thread is not ticker.loop_thread for thread in self.threads), self.threads
        if thread_prefix is not None:
            assert all(thread.name.startswith(thread_prefix) for thread in self.threads), self.threads
        assert all(ticks > 0 for ticks in self.ticks_meanwhile), self.ticks_meanwhile  # the loop kept going


def run_ticking(ticker: Ticker, work: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(work())`` with the ticker running beside it."""

    async def main() -> T:
        ticker.loop_thread = threading.current_thread()
        task = asyncio.create_task(ticker.run())
        try:
            return await work()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return asyncio.run(main())
