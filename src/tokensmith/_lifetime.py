"""When a token should be renewed: one rule, stdlib-free, shared by ``Token`` and the command line's cached-token
path (which must answer exactly as the library would without importing it)."""

from __future__ import annotations

#: Renew ahead of expiry by a tenth of the token's lifetime, at most this much (seconds). A 60 s token is renewed
#: 6 s early, a 1 h token 60 s early: never a fresh short-lived token treated as expired.
MAX_LEEWAY = 60.0
LEEWAY_FRACTION = 0.1


def renew_at(expires_at: float | None, issued_at: float | None) -> float | None:
    """The wall-clock time from which a token should be renewed; None if its expiry is unknown."""
    if expires_at is None:
        return None
    if issued_at is None:
        return expires_at - MAX_LEEWAY
    lifetime = max(0.0, expires_at - issued_at)
    return expires_at - min(MAX_LEEWAY, lifetime * LEEWAY_FRACTION)


def usable(expires_at: float | None, issued_at: float | None, now: float, min_valid: float = 0.0) -> bool:
    """Fresh at ``now`` (before its renewal point) and valid at least ``min_valid`` more seconds."""
    point = renew_at(expires_at, issued_at)
    if point is not None and not now < point:
        return False
    return min_valid <= 0 or expires_at is None or expires_at - now >= min_valid
