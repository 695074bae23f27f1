"""One flow, two drivers: renewal and device login written once as generators, run by a sync or an async runner.

A flow is a generator that *yields* what it needs done (an HTTP request, a wait, a blocking store call, a user
callback) and *receives* the result, or has the failure thrown in at the ``yield``; its return value is the
flow's result (httpx's ``Auth.auth_flow`` works the same way). The flow decides everything; the runner only
carries it out through an IO object: ``run`` with one whose methods return results (the ``requests``
transport, plain calls, ``time.sleep``), ``arun`` with one whose methods are coroutines (the httpx transport,
worker threads for blocking calls, ``asyncio.sleep``). So the sync and async clients share every rule.

Building a request is no I/O, except where a user's callable is involved: a KMS or HSM signer (a client assertion,
a DPoP proof) or a credential source (a grant's subject token or assertion) may take a network round trip. The
flows build those through ``build`` and ``fresh_request``, which yield a ``Blocking`` effect when the object says
it ``may_block`` (the async runner then calls it in a worker thread; a sync runner calls it right there) and build
inline otherwise: signing with an in-memory key takes microseconds, less than a thread hop.

A flow never yields from a ``finally`` clause or while handling ``GeneratorExit``: the runners always drive a
flow to its end (throwing failures in), so clean-up steps are written as ``except BaseException`` branches.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._protocol.messages import HttpRequest, HttpResponse

T = TypeVar("T")


class Cancel(Protocol):
    """A cancel signal: ``threading.Event`` (sync) or ``asyncio.Event`` (async)."""

    def is_set(self) -> bool: ...


class IO(Protocol):
    """What a runner needs. Sync IO objects return results; async ones return awaitables of them."""

    def post(self, request: HttpRequest) -> Any: ...

    def get(self, url: str) -> Any: ...

    def sleep(self, seconds: float, cancel: Cancel | None) -> Any:
        """Wait, or until ``cancel`` is set; the result says whether it was cancelled."""

    def blocking(self, call: Callable[[], Any]) -> Any:
        """Run a blocking call (store I/O, a user's signer or credential source); the async IO runs it off the
        event loop."""

    def notify(self, callback: Callable[[Any], Any], value: Any) -> Any:
        """Call a user's callback; the async IO awaits it if it is a coroutine function."""


@dataclass(frozen=True)
class Post:
    """Send this request; receive the ``HttpResponse``."""

    request: HttpRequest

    def via(self, io: IO) -> Any:
        return io.post(self.request)


@dataclass(frozen=True)
class Get:
    """GET this URL (metadata discovery); receive the ``HttpResponse``."""

    url: str

    def via(self, io: IO) -> Any:
        return io.get(self.url)


@dataclass(frozen=True)
class Sleep:
    """Wait this many seconds, or until ``cancel`` is set; receive True if the wait was cancelled."""

    seconds: float
    cancel: Cancel | None = None

    def via(self, io: IO) -> Any:
        return io.sleep(self.seconds, self.cancel)


@dataclass(frozen=True)
class Blocking:
    """Run this blocking call (store I/O, or building a request with a user's callable); receive its result."""

    call: Callable[[], Any]

    def via(self, io: IO) -> Any:
        return io.blocking(self.call)


@dataclass(frozen=True)
class Notify:
    """Call a user's callback with one argument (sync, or async under the async runner)."""

    callback: Callable[[Any], Any]
    value: Any

    def via(self, io: IO) -> Any:
        return io.notify(self.callback, self.value)


Effect = Post | Get | Sleep | Blocking | Notify
Flow = Generator[Effect, Any, T]


def build(make: Callable[[], T], may_block: bool) -> Flow[T]:
    """``make()``, as a ``Blocking`` effect when it calls a user's callable that may block, else right here."""
    if may_block:
        return (yield Blocking(make))  # type: ignore[no-any-return]
    return make()


def fresh_request(request: HttpRequest) -> Flow[HttpRequest]:
    """``request.fresh()`` (a new single-use client assertion for a retry or a poll), built through ``build``."""
    if request.renew is None:
        return request
    return (yield from build(request.renew, request.renew_may_block))


def _advance(flow: Flow[Any], value: Any, failure: BaseException | None) -> tuple[bool, Any]:
    """Resume ``flow`` with a result or a failure: (True, its return value) or (False, its next effect)."""
    try:
        return False, flow.send(value) if failure is None else flow.throw(failure)
    except StopIteration as stop:
        return True, stop.value


def run(flow: Flow[T], io: IO) -> T:
    """Drive ``flow`` to its end in this thread."""
    value: Any = None
    failure: BaseException | None = None
    while True:
        done, effect = _advance(flow, value, failure)
        if done:
            return effect  # type: ignore[no-any-return]
        value, failure = None, None
        try:
            value = effect.via(io)
        except BaseException as error:  # thrown into the flow, which decides
            failure = error


async def arun(flow: Flow[T], io: IO) -> T:
    """Drive ``flow`` to its end on the running event loop."""
    value: Any = None
    failure: BaseException | None = None
    while True:
        done, effect = _advance(flow, value, failure)
        if done:
            return effect  # type: ignore[no-any-return]
        value, failure = None, None
        try:
            value = await effect.via(io)
        except BaseException as error:  # thrown into the flow, which decides (a cancellation too)
            failure = error


def plain_sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class SyncCalls:
    """The parts of a sync IO that need no configuration: blocking calls and callbacks run right here."""

    def blocking(self, call: Callable[[], T]) -> T:
        return call()

    def notify(self, callback: Callable[[Any], Any], value: Any) -> None:
        callback(value)


class SimpleIO(SyncCalls):
    """A sync IO from plain callables: a transport's ``post`` (and ``get``), and a ``sleeper`` that says
    whether it was cancelled (it knows its cancel signal already, e.g. ``cancel.wait``)."""

    def __init__(
        self,
        post: Callable[[HttpRequest], HttpResponse],
        get: Callable[[str], HttpResponse] | None = None,
        sleeper: Callable[[float], bool] = plain_sleep,
    ) -> None:
        self.post = post
        self._get = get
        self._sleeper = sleeper

    def get(self, url: str) -> HttpResponse:
        if self._get is None:
            raise TypeError("this flow's transport does not do GET requests")
        return self._get(url)

    def sleep(self, seconds: float, cancel: Cancel | None) -> bool:
        return self._sleeper(seconds)


async def maybe_await(result: Any) -> Any:
    """``result``, awaited if it is awaitable (a callback that may be sync or async)."""
    if inspect.isawaitable(result):
        return await result
    return result
