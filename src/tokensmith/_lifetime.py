"""Until when a stored token is handed out without a renewal first: one rule, stdlib-free, shared by the renewal
policy (``tokensmith._protocol.renewal``) and the command line's cached-token path, which must answer exactly as
the library would without importing it.

A token records its ``must_refresh_at`` when it arrives (``Token.must_refresh_at``); one stored before that
field existed gets the default mandatory window: a tenth of its lifetime, at most 60 s, before it expires. So a
fresh 60 s token is not treated as expired, and a 1 h token is renewed a minute early.
"""

from __future__ import annotations

#: The default mandatory window: at most this many seconds before expiry ...
MANDATORY_SECONDS = 60.0
#: ... and at most this fraction of the token's lifetime.
MANDATORY_FRACTION = 0.1


def serve_until(
    expires_at: float | None, issued_at: float | None, must_refresh_at: float | None = None
) -> float | None:
    """The wall-clock time from which the token must be renewed before use; None if its expiry is unknown."""
    if expires_at is None:
        return None
    if must_refresh_at is not None:
        return must_refresh_at
    if issued_at is None:
        return expires_at - MANDATORY_SECONDS
    lifetime = max(0.0, expires_at - issued_at)
    return expires_at - min(MANDATORY_SECONDS, lifetime * MANDATORY_FRACTION)


def usable(
    expires_at: float | None,
    issued_at: float | None,
    now: float,
    min_valid: float = 0.0,
    must_refresh_at: float | None = None,
) -> bool:
    """Before its must-refresh point (and its expiry, whatever the recorded point says) at ``now``, and valid at
    least ``min_valid`` more seconds."""
    point = serve_until(expires_at, issued_at, must_refresh_at)
    if point is not None and not (now < point and now < (expires_at if expires_at is not None else point)):
        return False
    return min_valid <= 0 or expires_at is None or expires_at - now >= min_valid
