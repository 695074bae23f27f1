"""When to renew a token, as pure functions of the token's times, a policy, the current time and a random draw.

A token has two deadlines, fixed when it arrives:

- ``refresh_at``: from here on it is worth renewing, but the token is still served at once while one worker
  renews it in the background. The server's ``refresh_in`` when it sent one (Azure AD does); half the lifetime
  for long-lived tokens (two hours or more, as MSAL does); otherwise ``expires_at`` minus the advisory window.
  Moved earlier by a random fraction (the jitter), so a fleet of clients that got their tokens together does
  not renew them together.
- ``must_refresh_at``: ``expires_at`` minus the mandatory window. Past it a caller waits for a renewal
  (single flight) instead of being handed a token about to expire.

Both windows scale with the lifetime (a fraction of it, capped), so a 60 s token and a 24 h token both behave:
the 60 s token is renewed from about 45 s and must be renewed by 54 s; the 24 h token from about 12 h, by
23 h 59 min.

The back-off between failed renewals lives here too: capped, jittered exponential steps that honour the
server's ``Retry-After``, never shorter than a minimum gap.

Nothing here reads a clock or a random source: the drivers pass ``now`` and draws in ``[0, 1)``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .._lifetime import MANDATORY_FRACTION, MANDATORY_SECONDS


class RenewalState(str, enum.Enum):
    """Where a token stands at a given moment."""

    #: Before ``refresh_at``: use it, nothing to do.
    FRESH = "fresh"
    #: Between ``refresh_at`` and ``must_refresh_at``: use it, and let one worker renew it in the background.
    REFRESH_SOON = "refresh_soon"
    #: Between ``must_refresh_at`` and ``expires_at``: still valid, but renew before handing it out.
    MUST_REFRESH = "must_refresh"
    #: At or past ``expires_at``: unusable.
    EXPIRED = "expired"


@dataclass(frozen=True)
class RenewalPolicy:
    """The renewal windows and the pacing of attempts (seconds, or fractions of the token's lifetime).

    - ``advisory`` / ``advisory_fraction``: background renewal starts this long before expiry: the smaller of
      ``advisory`` seconds and ``advisory_fraction`` of the lifetime (``advisory`` alone when the lifetime is
      unknown).
    - ``mandatory`` / ``mandatory_fraction``: callers wait for a renewal this long before expiry (same rule).
    - ``long_lived``: tokens living at least this long are renewed at half their lifetime instead.
    - ``jitter``: ``refresh_at`` moves earlier by up to this fraction of the time from receipt to it.
    - ``min_gap``: the least time between two renewal attempts after a failure (shared by every caller).
    """

    advisory: float = 300.0
    advisory_fraction: float = 0.25
    # The command line's cached-token path applies the same default window (tokensmith._lifetime).
    mandatory: float = MANDATORY_SECONDS
    mandatory_fraction: float = MANDATORY_FRACTION
    long_lived: float = 7200.0
    jitter: float = 0.1
    min_gap: float = 1.0

    def __post_init__(self) -> None:
        for name in ("advisory", "mandatory", "long_lived", "min_gap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ValueError(f"RenewalPolicy({name}=...) must be a finite number of seconds >= 0, not {value!r}")
        for name in ("advisory_fraction", "mandatory_fraction", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"RenewalPolicy({name}=...) must be a fraction between 0 and 1, not {value!r}")
        if self.mandatory > self.advisory or self.mandatory_fraction > self.advisory_fraction:
            raise ValueError("RenewalPolicy: the mandatory window must not be longer than the advisory one")


DEFAULT_POLICY = RenewalPolicy()


@dataclass(frozen=True)
class Deadlines:
    """A token's two renewal deadlines (wall clock, like ``expires_at``)."""

    refresh_at: float
    must_refresh_at: float


def deadlines(
    expires_at: float,
    issued_at: float | None,
    *,
    refresh_in: float | None = None,
    policy: RenewalPolicy = DEFAULT_POLICY,
    draw: float = 0.0,
) -> Deadlines:
    """The deadlines of a token expiring at ``expires_at``, received at ``issued_at`` (None: unknown, so the
    lifetime is unknown and the windows are their caps), with the server's ``refresh_in`` (seconds after
    receipt) if it sent one. ``draw`` in ``[0, 1)`` picks the jitter: 0 gives the nominal ``refresh_at``.

    Always ``issued_at <= refresh_at <= must_refresh_at <= expires_at``."""
    lifetime = None if issued_at is None else max(0.0, expires_at - issued_at)
    start = expires_at if lifetime is None else expires_at - lifetime
    must = expires_at - _window(policy.mandatory, policy.mandatory_fraction, lifetime)
    if refresh_in is not None and issued_at is not None and refresh_in > 0:
        nominal = issued_at + refresh_in
    elif lifetime is not None and policy.long_lived > 0 and lifetime >= policy.long_lived:
        nominal = start + lifetime / 2
    else:
        nominal = expires_at - _window(policy.advisory, policy.advisory_fraction, lifetime)
    nominal = min(nominal, must)
    # Jitter only ever makes renewal earlier: never later than the policy (or the server) asked.
    span = (nominal - start) if lifetime is not None else (expires_at - nominal)
    refresh = nominal - min(max(draw, 0.0), 1.0) * policy.jitter * max(span, 0.0)
    if lifetime is not None:
        refresh = max(refresh, start)
    return Deadlines(refresh_at=refresh, must_refresh_at=must)


def _window(cap: float, fraction: float, lifetime: float | None) -> float:
    return cap if lifetime is None else min(cap, lifetime * fraction)


def renewal_state(
    now: float, refresh_at: float | None, must_refresh_at: float | None, expires_at: float | None
) -> RenewalState:
    """Where a token with these deadlines stands at ``now``. A token without an expiry is always fresh."""
    if expires_at is None:
        return RenewalState.FRESH
    if not now < expires_at:  # written this way round so that a NaN counts as expired
        return RenewalState.EXPIRED
    if must_refresh_at is not None and not now < must_refresh_at:
        return RenewalState.MUST_REFRESH
    if refresh_at is not None and not now < refresh_at:
        return RenewalState.REFRESH_SOON
    return RenewalState.FRESH


def backoff_step(
    failures: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    min_gap: float = 0.0,
    draw: float = 1.0,
) -> float:
    """How long to wait after the ``failures``-th failure in a row (1 for the first): ``base * 2**(failures-1)``
    capped at ``cap``, then jittered into its upper half by ``draw`` in ``[0, 1]`` ("equal jitter": never less
    than half the step, so the pace still backs off), at least ``min_gap``, and at least the server's
    ``Retry-After`` (which may exceed ``cap``: the server knows best when it is back)."""
    exponent = min(max(failures, 1) - 1, 64)
    step = min(cap, base * 2.0**exponent)
    step = step / 2 + min(max(draw, 0.0), 1.0) * step / 2
    step = max(step, min_gap)
    if retry_after is not None:
        step = max(step, retry_after)
    return step
