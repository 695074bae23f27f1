"""When a failed token request may be sent again (C32; issue: retries must never double-spend a refresh token).

- Client-credentials requests are safe to repeat: retried on any transient failure (network, 5xx, 429).
- A refresh with a possibly rotating refresh token is repeated only when the server cannot have acted on it:
  the connection was never made, or the server said so explicitly (429, 503 with or without Retry-After).
  After a read timeout or a dropped connection the server may already have rotated the token; sending the old
  one again would be a replay that some servers punish by revoking the whole grant (oidc-provider does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .exceptions import InvalidResponse, OAuthError, TokensmithError, TransportError

logger = logging.getLogger("tokensmith.retry")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: at most ``attempts`` tries, waits of ``backoff * 2**n`` seconds (or the server's
    ``Retry-After``), never more than ``max_wait`` per wait; a ``Retry-After`` above ``max_wait`` is not
    waited for at all (the error is raised, carrying ``retry_after``)."""

    attempts: int = 3
    backoff: float = 0.5
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(
                f"RetryPolicy(attempts=...) must be an integer >= 1 (1 = no retries), not {self.attempts!r}"
            )
        for name in ("backoff", "max_wait"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ValueError(f"RetryPolicy({name}=...) must be a finite number of seconds >= 0, not {value!r}")

    def run(self, call: Callable[[], T], *, replay_safe: bool, sleep: Callable[[float], None] = time.sleep) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except TokensmithError as error:
                wait = self.next_wait(error, attempt, replay_safe=replay_safe)
                if wait is None:
                    raise
                sleep(wait)
        raise AssertionError("unreachable: attempts >= 1")

    def next_wait(self, error: TokensmithError, attempt: int, *, replay_safe: bool) -> float | None:
        """Seconds to wait before trying again after ``attempt`` (1 for the first) failed with ``error``, or
        None when it must not be tried again (attempts used up, not retryable, or a ``Retry-After`` beyond
        ``max_wait``). Logs the retry it allows."""
        if attempt >= self.attempts or not may_retry(error, replay_safe=replay_safe):
            return None
        wait: float = self.backoff * 2.0 ** (attempt - 1)
        if error.retry_after is not None:
            if error.retry_after > self.max_wait:
                return None
            wait = max(wait, error.retry_after)
        wait = min(wait, self.max_wait)
        logger.warning(
            "token request failed (%s); retrying in %.1f s (attempt %d of %d)",
            type(error).__name__,
            wait,
            attempt + 1,
            self.attempts,
        )
        return wait


NO_RETRY = RetryPolicy(attempts=1)


def may_retry(error: TokensmithError, *, replay_safe: bool) -> bool:
    if not error.transient:
        return False
    if replay_safe:
        return True
    # Not replay-safe (a refresh): only when the server certainly did not act on the request.
    if isinstance(error, TransportError):
        return error.request_sent is False
    status = getattr(error, "status_code", None)
    return isinstance(error, InvalidResponse | OAuthError) and status in (429, 503)


RetryPolicy.__module__ = "tokensmith"  # public face (see tokensmith/__init__.py)
