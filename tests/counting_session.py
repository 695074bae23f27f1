"""A real ``requests.Session`` that records every POST, so tests and benchmarks can count token requests
(counts, not timings, are what tests assert)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests


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
