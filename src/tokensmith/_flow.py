"""One flow, two drivers: renewal and device login written once as generators, run by a sync or an async runner.

A flow is a generator that *yields* what it needs done (an HTTP request, a wait, a blocking store call, a user
callback) and *receives* the result, or has the failure thrown in at the ``yield``; its return value is the
flow's result (httpx's ``Auth.auth_flow`` works the same way). The flow decides everything; the runner only
carries it out: ``run`` with the ``requests`` transport, plain calls and ``time.sleep``, ``arun`` with the httpx
transport, worker threads for blocking calls and ``asyncio.sleep``. So the sync and async clients share every rule.

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


@dataclass(frozen=True)
class Post:
    """Send this request; receive the ``HttpResponse``."""

    request: HttpRequest


@dataclass(frozen=True)
class Get:
    """GET this URL (metadata discovery); receive the ``HttpResponse``."""

    url: str


@dataclass(frozen=True)
class Sleep:
    """Wait this many seconds; receive True if the wait was cancelled."""

    seconds: float


@dataclass(frozen=True)
class Blocking:
    """Run this blocking call (store I/O); receive its result. The async runner runs it off the event loop."""

    call: Callable[[], Any]


@dataclass(frozen=True)
class Notify:
    """Call a user's callback with one argument; it may be a coroutine function under the async runner."""

    callback: Callable[[Any], Any]
    value: Any


Effect = Post | Get | Sleep | Blocking | Notify
Flow = Generator[Effect, Any, T]


class SyncIO(Protocol):
    def post(self, request: HttpRequest) -> HttpResponse: ...

    def get(self, url: str) -> HttpResponse: ...

    def sleep(self, seconds: float) -> bool: ...


class AsyncIO(Protocol):
    async def post(self, request: HttpRequest) -> HttpResponse: ...

    async def get(self, url: str) -> HttpResponse: ...

    async def sleep(self, seconds: float) -> bool: ...

    async def blocking(self, call: Callable[[], T]) -> T: ...


def _no_get(url: str) -> HttpResponse:
    raise TypeError("this flow's transport does not do GET requests")


def plain_sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


@dataclass(frozen=True)
class SimpleIO:
    """A ``SyncIO`` from plain callables: a transport's ``post`` (and ``get``), and a sleep that says whether
    it was cancelled."""

    post: Callable[[HttpRequest], HttpResponse]
    get: Callable[[str], HttpResponse] = _no_get
    sleep: Callable[[float], bool] = plain_sleep


def run(flow: Flow[T], io: SyncIO) -> T:
    """Drive ``flow`` to its end in this thread."""
    value: Any = None
    failure: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if failure is None else flow.throw(failure)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value, failure = None, None
        try:
            if isinstance(effect, Post):
                value = io.post(effect.request)
            elif isinstance(effect, Get):
                value = io.get(effect.url)
            elif isinstance(effect, Sleep):
                value = io.sleep(effect.seconds)
            elif isinstance(effect, Blocking):
                value = effect.call()
            else:
                effect.callback(effect.value)
        except BaseException as error:  # thrown into the flow, which decides
            failure = error


async def arun(flow: Flow[T], io: AsyncIO) -> T:
    """Drive ``flow`` to its end on the running event loop."""
    value: Any = None
    failure: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if failure is None else flow.throw(failure)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value, failure = None, None
        try:
            if isinstance(effect, Post):
                value = await io.post(effect.request)
            elif isinstance(effect, Get):
                value = await io.get(effect.url)
            elif isinstance(effect, Sleep):
                value = await io.sleep(effect.seconds)
            elif isinstance(effect, Blocking):
                value = await io.blocking(effect.call)
            else:
                await maybe_await(effect.callback(effect.value))
        except BaseException as error:  # thrown into the flow, which decides
            failure = error


async def maybe_await(result: Any) -> Any:
    """``result``, awaited if it is awaitable (a callback that may be sync or async)."""
    if inspect.isawaitable(result):
        return await result
    return result
