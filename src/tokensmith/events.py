"""Renewal events: what a client's ``on_event`` callback receives, so operators can alert on a failing renewal
before the token it renews expires.

Each event is a small frozen dataclass of plain values. None carries a token, a refresh token, a secret or a
server's error text: an error is named by its class (``"TemporarilyUnavailable"``), times are seconds relative
to the moment of the event. The same events are logged on the ``tokensmith.client`` logger (INFO for started and
succeeded, WARNING for failed and served-stale) and counted on ``client.stats``.

- ``RenewalStarted``: a renewal goes to the network (after the store showed nobody else had done it).
- ``RenewalSucceeded``: it brought a new token.
- ``RenewalFailed``: it did not. ``transient`` failures (network, 5xx, 429) are retried after ``retry_in``
  seconds; while the current token is still valid (``valid_for``) it keeps being served.
- ``ServedStale``: a token past its renewal point was handed out because renewing it keeps failing (once per
  failed attempt; ``client.stats.served_stale`` counts every such call).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RenewalEvent", "RenewalFailed", "RenewalStarted", "RenewalSucceeded", "ServedStale"]


@dataclass(frozen=True)
class RenewalStarted:
    #: How the token is renewed: ``"refresh_token"``, ``"client_credentials"`` or ``"device_code"``.
    grant: str
    #: True when a background worker renews (no caller is waiting for it).
    background: bool
    #: Consecutive attempt number: 1, or one more than the failures since the last success.
    attempt: int
    #: Seconds the current token is still valid; None when there is none (or it never expires).
    valid_for: float | None


@dataclass(frozen=True)
class RenewalSucceeded:
    grant: str
    background: bool
    attempt: int
    #: Seconds the new token is valid; None if the server gave no lifetime.
    expires_in: float | None
    #: Seconds until the new token's own renewal point (``refresh_at``); None without an expiry.
    refresh_in: float | None
    #: How long the renewal took, seconds (monotonic clock).
    duration: float


@dataclass(frozen=True)
class RenewalFailed:
    #: As in ``RenewalStarted``; None when the renewal failed before a grant was chosen (metadata discovery).
    grant: str | None
    background: bool
    attempt: int
    #: The error's class name, e.g. ``"TemporarilyUnavailable"``, ``"ConnectError"``, ``"InvalidGrant"``.
    error_class: str
    #: Worth retrying later (network, 5xx, 429), as opposed to a rejection.
    transient: bool
    #: Seconds until the next attempt may start (the shared back-off step); None when none is planned.
    retry_in: float | None
    #: Seconds the current token is still valid (it keeps being served meanwhile); None when there is none.
    valid_for: float | None
    #: The HTTP status of the failed answer, when there was one.
    status_code: int | None = None


@dataclass(frozen=True)
class ServedStale:
    #: Seconds the served token is still valid.
    valid_for: float
    #: Consecutive failed renewal attempts so far.
    failures: int


RenewalEvent = RenewalStarted | RenewalSucceeded | RenewalFailed | ServedStale

# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
for _cls in (RenewalStarted, RenewalSucceeded, RenewalFailed, ServedStale):
    _cls.__module__ = "tokensmith"
