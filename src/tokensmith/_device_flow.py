"""The synchronous device-flow poller: drives ``PollSchedule`` with real time and the transport."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._protocol.device import DeviceAuthorization
from ._protocol.messages import HttpRequest
from ._protocol.polling import DEFAULT_MARGIN, PollOutcome, PollSchedule
from ._protocol.token import TokenResponse, parse_token_response
from ._transport import Transport
from .exceptions import AuthorizationPending, DeviceFlowCancelled, SlowDown, TokensmithError

logger = logging.getLogger("tokensmith.device")


@dataclass(frozen=True)
class PollProgress:
    """What a UI may show after each poll."""

    polls: int
    outcome: PollOutcome
    interval: float
    time_left: float
    next_poll_in: float


def poll_device_token(
    transport: Transport,
    request: HttpRequest,
    authorization: DeviceAuthorization,
    *,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[PollProgress], None] | None = None,
    accepted_token_types: Iterable[str] = ("bearer",),
    margin: float = DEFAULT_MARGIN,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], bool] | None = None,
) -> TokenResponse:
    """Poll the token endpoint until the user approves, denies, or time runs out (RFC 8628 §3.4–§3.5).

    ``sleep(seconds)`` returns True when cancelled; by default it waits on ``cancel`` (so another thread can
    stop a sleeping poller at once) or plain ``time.sleep``. Terminal answers (``access_denied``,
    ``expired_token``, unknown errors) stop at once; transient ones back off and continue until the deadline.
    """
    if sleep is None:
        sleep = cancel.wait if cancel is not None else _plain_sleep
    now = clock()
    # The code started expiring when the response arrived, which may be a while ago (the caller showed a prompt).
    elapsed = max(0.0, time.time() - authorization.received_at) if authorization.received_at else 0.0
    schedule = PollSchedule.start(
        authorization.interval, authorization.expires_in - elapsed, now, timeout=timeout, margin=margin
    )
    accepted = tuple(accepted_token_types)
    while True:
        if cancel is not None and cancel.is_set():
            raise DeviceFlowCancelled(f"device login cancelled ({schedule.polls} polls made)")
        wait = schedule.next_wait(clock())
        if wait > 0 and sleep(wait):
            raise DeviceFlowCancelled(f"device login cancelled ({schedule.polls} polls made)")
        if cancel is not None and cancel.is_set():
            raise DeviceFlowCancelled(f"device login cancelled ({schedule.polls} polls made)")
        retry_after: float | None = None
        new_interval: float | None = None
        try:
            token = parse_token_response(transport.post(request), request.secrets, accepted_token_types=accepted)
        except SlowDown as exc:
            outcome, new_interval, retry_after = PollOutcome.SLOW_DOWN, exc.interval, exc.retry_after
        except AuthorizationPending as exc:
            outcome, retry_after = PollOutcome.PENDING, exc.retry_after
        except TokensmithError as exc:
            if not exc.transient:
                raise
            outcome, retry_after = PollOutcome.TRANSIENT, exc.retry_after
            logger.warning("device polling: transient failure, backing off: %s", exc)
        else:
            logger.info("device login approved after %d polls", schedule.polls + 1)
            return token
        at = clock()
        schedule.record(outcome, at, new_interval=new_interval, retry_after=retry_after)
        logger.debug(
            "device polling: %s; interval %.1f s; %.0f s left", outcome.value, schedule.interval, schedule.time_left(at)
        )
        if on_progress is not None:
            on_progress(
                PollProgress(
                    schedule.polls,
                    outcome,
                    schedule.interval,
                    schedule.time_left(at),
                    max(0.0, schedule.not_before - at),
                )
            )


def _plain_sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False
