"""The device-flow polling schedule (RFC 8628 §3.5, C17), as a state machine over caller-supplied time.

It decides *when* the next poll may go out and *whether* one may go out at all; the driver does the
sleeping and the HTTP. All times are ``time.monotonic()`` seconds passed in by the driver.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..exceptions import DeviceFlowTimeout, ExpiredToken, PersistentSlowDown

#: RFC 8628 §3.5: "the interval MUST be increased by 5 seconds for this and all subsequent requests".
SLOW_DOWN_STEP = 5.0
#: Added to every wait so a poll never lands *exactly* on the interval: VM/WSL clock drift and network
#: jitter then cannot make it look early to the server. Small, so approval-to-token stays within interval+0.1 s.
DEFAULT_MARGIN = 0.05
#: Floor of the gap between polls: a server interval of 0 (or less) must not turn polling into a tight loop.
#: The first poll still goes out after the server's own interval (a single early poll is not a loop).
MIN_INTERVAL = 1.0
#: Ceiling of the exponential backoff after transport errors and 5xx.
MAX_BACKOFF = 60.0
#: When the server's interval is as long as the code's whole life (Keycloak lets an admin set a 600 s interval
#: next to the default 600 s code lifespan), the first poll goes out this long before the code expires instead of
#: never. RFC 8628 §3.5's "wait at least the interval" binds each *new* request after a pending answer.
FIRST_POLL_LEAD = 1.0
#: This many slow_down answers in a row, although each wait was 5 s longer, means something else is wrong.
MAX_CONSECUTIVE_SLOW_DOWNS = 5


class PollOutcome(str, enum.Enum):
    PENDING = "authorization_pending"
    SLOW_DOWN = "slow_down"
    TRANSIENT = "transient_error"
    #: Final events for UIs (not schedule inputs): a token arrived / polling ended without one.
    APPROVED = "approved"
    STOPPED = "stopped"

    @property
    def final(self) -> bool:
        return self in (PollOutcome.APPROVED, PollOutcome.STOPPED)


@dataclass
class PollSchedule:
    """When to poll. Create with ``start``; ask ``next_wait`` before each poll; ``record`` each answer."""

    interval: float
    deadline: float
    caller_deadline: float | None = None
    margin: float = DEFAULT_MARGIN
    max_backoff: float = MAX_BACKOFF
    max_slow_downs: int = MAX_CONSECUTIVE_SLOW_DOWNS
    expires_in: float = 0.0
    not_before: float = 0.0
    polls: int = 0
    slow_downs: int = 0
    #: The outcome of the latest poll (None before the first): the driver reports a transport failure, not
    #: "expired", when polling ends because the server could not be reached.
    last_outcome: PollOutcome | None = None
    _slow_down_streak: int = field(default=0, repr=False)
    _transient_streak: int = field(default=0, repr=False)

    @classmethod
    def start(
        cls,
        interval: float,
        expires_in: float,
        now: float,
        *,
        timeout: float | None = None,
        margin: float = DEFAULT_MARGIN,
        max_slow_downs: int = MAX_CONSECUTIVE_SLOW_DOWNS,
    ) -> PollSchedule:
        """Begin at ``now`` (when the device authorization response arrived). The first poll also waits one
        interval: the user cannot have approved yet, and RFC 8628 §3.5 asks for the wait "before each". But an
        interval as long as the code's remaining life would leave no poll at all (the login failed at once, as
        "expired"): the first poll then goes out ``FIRST_POLL_LEAD`` before the code expires.
        Later gaps are at least ``MIN_INTERVAL``."""
        requested = max(0.0, float(interval))
        deadline = now + max(0.0, float(expires_in))
        first = now + requested + margin
        if first >= deadline:
            first = max(now, deadline - FIRST_POLL_LEAD)
        return cls(
            interval=max(MIN_INTERVAL, requested),
            deadline=deadline,
            caller_deadline=None if timeout is None else now + max(0.0, timeout),
            margin=margin,
            max_slow_downs=max_slow_downs,
            expires_in=float(expires_in),
            not_before=first,
        )

    def time_left(self, now: float) -> float:
        end = self.deadline if self.caller_deadline is None else min(self.deadline, self.caller_deadline)
        return max(0.0, end - now)

    def next_wait(self, now: float) -> float:
        """Seconds to wait before the next poll. Raises when that poll would not go out before the device
        code expires (``ExpiredToken``) or before the caller's own timeout (``DeviceFlowTimeout``)."""
        send_at = max(now, self.not_before)
        if (
            self.caller_deadline is not None
            and send_at >= self.caller_deadline
            and self.caller_deadline < self.deadline
        ):
            raise DeviceFlowTimeout(
                f"gave up waiting for approval after the caller's timeout ({self.polls} polls made)"
            )
        if send_at >= self.deadline:
            if now < self.deadline:  # said so: the person may still be approving, and the code is still alive
                raise ExpiredToken(
                    "expired_token",
                    f"the device code expires in {self.deadline - now:.0f} s, before the next poll the server's "
                    f"interval ({self.interval:g} s) allows; the login was not approved in time "
                    f"({self.polls} polls made)",
                )
            raise ExpiredToken(
                "expired_token",
                f"the device code expired after {self.expires_in:g} s before the login was approved "
                f"({self.polls} polls made)",
            )
        return send_at - now

    def record(
        self, outcome: PollOutcome, now: float, *, new_interval: float | None = None, retry_after: float | None = None
    ) -> None:
        """Account for one poll's answer, received at ``now``. Waits are measured from the answer, so a slow
        response never shortens the gap the server sees."""
        self.polls += 1
        self.last_outcome = outcome
        if outcome is PollOutcome.SLOW_DOWN:
            self.slow_downs += 1
            self._slow_down_streak += 1
            self._transient_streak = 0
            self.interval = max(self.interval + SLOW_DOWN_STEP, float(new_interval or 0))
            if self._slow_down_streak >= self.max_slow_downs:
                raise PersistentSlowDown(
                    f"the server answered slow_down {self._slow_down_streak} times in a row although every "
                    f"wait grew by 5 s (now {self.interval:g} s). Likely causes: the system clock is drifting "
                    f"(common on WSL and suspended VMs; resync it), or another process is polling with the same "
                    f"device code."
                )
            wait = self.interval
        elif outcome is PollOutcome.TRANSIENT:
            # RFC 8628 §3.5: on errors, reduce the polling frequency; exponential backoff.
            self._transient_streak += 1
            wait = min(self.max_backoff, max(self.interval, 1.0) * 2**self._transient_streak)
            wait = max(wait, self.interval)
        else:
            self._slow_down_streak = 0
            self._transient_streak = 0
            wait = self.interval
        if retry_after is not None:
            wait = max(wait, retry_after)
        not_before = now + wait + self.margin
        if outcome is PollOutcome.TRANSIENT and retry_after is None:
            # Back-off must not skip the code's remaining life: keep one last try an interval before it
            # expires (still at least an interval after this answer).
            not_before = min(not_before, max(now + self.interval + self.margin, self.deadline - self.interval))
        self.not_before = not_before
