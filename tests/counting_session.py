"""A real ``requests.Session`` that records every POST, so tests and benchmarks can count token requests
(counts, not timings, are what tests assert)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from tokensmith import Transport

if TYPE_CHECKING:
    from tokensmith._protocol.messages import HttpRequest, HttpResponse


@dataclass(frozen=True)
class Post:
    url: str
    sent: float  # time.monotonic()
    answered: float
    status: int


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # loopback only: never through a proxy from the environment
        self.posts: list[Post] = []
        self._lock = threading.Lock()

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        sent = time.monotonic()
        response = super().post(url, *args, **kwargs)
        with self._lock:
            self.posts.append(Post(str(url), sent, time.monotonic(), response.status_code))
        return response

    def count(self, url: str | None = None) -> int:
        with self._lock:
            return sum(1 for p in self.posts if url is None or p.url == url)

    def to(self, url: str) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if p.url == url]


class ThreadCountingTransport(Transport):
    """A ``tokensmith.Transport`` that records which thread sent each token request: a caller's thread (the
    caller waited for the network) or the background renewal worker (``tokensmith-renewal``; nobody waited)."""

    def __init__(self, session: requests.Session | None = None, **kwargs: Any) -> None:
        super().__init__(session if session is not None else CountingSession(), **kwargs)
        self.senders: list[str] = []
        self.sent_at: list[float] = []  # time.monotonic() as each request set off
        self._senders_lock = threading.Lock()
        #: While cleared, the background worker's requests wait here (the test decides when a renewal ends).
        self.worker_gate = threading.Event()
        self.worker_gate.set()

    def post(self, request: HttpRequest) -> HttpResponse:
        name = threading.current_thread().name
        with self._senders_lock:
            self.senders.append(name)
            self.sent_at.append(time.monotonic())
        if name == "tokensmith-renewal":
            self.worker_gate.wait(30)
        return super().post(request)

    def by_callers(self) -> int:
        """Requests sent while a caller of ``get_token()`` waited."""
        with self._senders_lock:
            return sum(1 for name in self.senders if name != "tokensmith-renewal")

    def by_worker(self) -> int:
        with self._senders_lock:
            return sum(1 for name in self.senders if name == "tokensmith-renewal")
