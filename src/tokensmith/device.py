"""Device login (RFC 8628): start, show a prompt, poll to a token.

The protocol rules live in the sans-IO core (``_protocol.device``, ``_protocol.polling``); this module drives
them with real time and the transport. It never prints: the caller gets a ``DevicePrompt`` through
``on_prompt`` *before* polling starts, ``PollProgress`` after every poll, and may cancel from another thread.
``tokensmith.cli.presenter.TerminalPresenter`` is a ready-made terminal UI for those callbacks.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._flow import Cancel, Flow, Notify, Post, SimpleIO, Sleep, build, fresh_request, plain_sleep, run
from ._http import HttpSender, Timeout
from ._protocol.client_auth import ClientAuth, may_block
from ._protocol.device import (
    DeviceAuthorization,
    device_authorization_request,
    device_token_request,
    parse_device_authorization,
)
from ._protocol.messages import HttpRequest
from ._protocol.params import ScopeInput
from ._protocol.polling import DEFAULT_MARGIN, PollOutcome, PollSchedule
from ._protocol.token import TokenResponse, parse_token_response
from ._warnings import log_protocol_warnings
from .exceptions import (
    AuthorizationPending,
    DeviceFlowCancelled,
    DeviceFlowTimeout,
    ExpiredToken,
    SlowDown,
    TokensmithError,
)
from .token import Token

logger = logging.getLogger("tokensmith.device")


__all__ = [
    "DeviceAuthorization",
    "DevicePrompt",
    "PollOutcome",
    "PollProgress",
    "device_login",
    "device_token_request",
    "poll_device_token",
    "start_device_login",
]


@dataclass(frozen=True)
class DevicePrompt:
    """What the person must see (RFC 8628 §3.3, C15): always ``user_code`` and ``verification_uri``;
    ``verification_uri_complete`` may additionally be shown as a QR code or opened in a browser. Never the
    device code."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    #: Wall-clock expiry (``time.time()`` based), for display.
    expires_at: float
    interval: int
    #: Azure AD's ready-made instruction text, when the server sent one.
    message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_authorization(cls, authorization: DeviceAuthorization) -> DevicePrompt:
        received = authorization.received_at or time.time()
        raw = {k: v for k, v in authorization.raw.items() if k != "device_code"}
        return cls(
            user_code=authorization.user_code,
            verification_uri=authorization.verification_uri,
            verification_uri_complete=authorization.verification_uri_complete,
            expires_in=authorization.expires_in,
            expires_at=received + authorization.expires_in,
            interval=authorization.interval,
            message=authorization.message,
            raw=raw,
        )


@dataclass(frozen=True)
class PollProgress:
    """What a UI may show after each poll."""

    polls: int
    outcome: PollOutcome
    interval: float
    time_left: float
    next_poll_in: float


def poll_device_token(
    transport: HttpSender,
    request: HttpRequest,
    authorization: DeviceAuthorization,
    *,
    login_timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[PollProgress], None] | None = None,
    accepted_token_types: Iterable[str] = ("bearer",),
    margin: float = DEFAULT_MARGIN,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], bool] | None = None,
) -> Token:
    """Poll the token endpoint until the user approves, denies, or time runs out (RFC 8628 §3.4–§3.5).

    ``sleep(seconds)`` returns True when cancelled; by default it waits on ``cancel`` (so another thread can
    stop a sleeping poller at once) or plain ``time.sleep``. Terminal answers (``access_denied``,
    ``expired_token``, unknown errors) stop at once; transient ones back off and continue until the deadline,
    and if the server could not be reached to the end, the last transport error is raised (not "expired").
    The code's remaining life is measured on ``clock`` from ``authorization.received_monotonic`` (set by
    ``start_device_login`` with the same clock). ``login_timeout`` is the caller's own deadline, in seconds.
    ``on_progress`` hears every poll's answer, then one last event: ``APPROVED`` or ``STOPPED``.
    """
    response = _poll(
        transport,
        request,
        authorization,
        login_timeout=login_timeout,
        cancel=cancel,
        on_progress=on_progress,
        accepted_token_types=accepted_token_types,
        margin=margin,
        clock=clock,
        sleep=sleep,
    )
    return Token.from_response(response)


def _poll(
    transport: HttpSender,
    request: HttpRequest,
    authorization: DeviceAuthorization,
    *,
    login_timeout: float | None,
    cancel: threading.Event | None,
    on_progress: Callable[[PollProgress], None] | None,
    accepted_token_types: Iterable[str],
    margin: float = DEFAULT_MARGIN,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], bool] | None = None,
) -> TokenResponse:
    """``poll_device_token`` returning the raw ``TokenResponse`` (the compat module needs ``expires_in``)."""
    flow = polling_flow(
        request,
        authorization,
        login_timeout=login_timeout,
        cancel=cancel,
        on_progress=on_progress,
        accepted_token_types=accepted_token_types,
        margin=margin,
        clock=clock,
    )
    return run(flow, SimpleIO(transport.post, sleeper=_default_sleep(cancel) if sleep is None else sleep))


def polling_flow(
    request: HttpRequest,
    authorization: DeviceAuthorization,
    *,
    login_timeout: float | None,
    cancel: Cancel | None,
    on_progress: Callable[[PollProgress], Any] | None,
    accepted_token_types: Iterable[str],
    margin: float = DEFAULT_MARGIN,
    clock: Callable[[], float] = time.monotonic,
) -> Flow[TokenResponse]:
    """The polling loop as a flow (see ``tokensmith._flow``), shared by the sync and async drivers."""
    now = clock()
    # The code started expiring when its response arrived, maybe a while ago (the caller showed a prompt).
    received = authorization.received_monotonic
    elapsed = max(0.0, now - received) if received is not None else 0.0
    schedule = PollSchedule.start(
        authorization.interval, authorization.expires_in - elapsed, now, timeout=login_timeout, margin=margin
    )
    try:
        token = yield from _poll_until_done(request, schedule, tuple(accepted_token_types), cancel, on_progress, clock)
    except GeneratorExit:
        raise
    except BaseException:
        # A UI must learn that polling is over (to stop its status line) whatever ended it, Ctrl-C included.
        yield from _final(on_progress, schedule, PollOutcome.STOPPED, clock())
        raise
    yield from _final(on_progress, schedule, PollOutcome.APPROVED, clock())
    return token


def _final(
    on_progress: Callable[[PollProgress], Any] | None, schedule: PollSchedule, outcome: PollOutcome, now: float
) -> Flow[None]:
    if on_progress is None:
        return
    try:
        yield Notify(
            on_progress, PollProgress(schedule.polls, outcome, schedule.interval, schedule.time_left(now), 0.0)
        )
    except Exception:  # a UI callback must not mask how polling ended
        logger.exception("device polling: the progress callback failed")


def _poll_until_done(
    request: HttpRequest,
    schedule: PollSchedule,
    accepted: tuple[str, ...],
    cancel: Cancel | None,
    on_progress: Callable[[PollProgress], Any] | None,
    clock: Callable[[], float],
) -> Flow[TokenResponse]:
    last_transient: TokensmithError | None = None
    while True:
        if cancel is not None and cancel.is_set():
            raise DeviceFlowCancelled(f"device login cancelled ({schedule.polls} polls made)")
        try:
            wait = schedule.next_wait(clock())
        except (ExpiredToken, DeviceFlowTimeout):
            if schedule.last_outcome is PollOutcome.TRANSIENT and last_transient is not None:
                # The server could not be reached to the end: that, not "expired", is what happened. Re-raised
                # as is, so its own cause (the requests exception) stays chained.
                raise last_transient  # noqa: B904
            raise
        if wait > 0 and (yield Sleep(wait, cancel)):
            raise DeviceFlowCancelled(f"device login cancelled ({schedule.polls} polls made)")
        if cancel is not None and cancel.is_set():
            raise DeviceFlowCancelled(f"device login cancelled ({schedule.polls} polls made)")
        retry_after: float | None = None
        new_interval: float | None = None
        if schedule.polls:
            request = yield from fresh_request(request)  # a single-use client assertion (RFC 7523): never twice
        try:
            token = parse_token_response((yield Post(request)), request.secrets, accepted_token_types=accepted)
            log_protocol_warnings(token.warnings)
        except SlowDown as exc:
            outcome, new_interval, retry_after = PollOutcome.SLOW_DOWN, exc.interval, exc.retry_after
        except AuthorizationPending as exc:
            outcome, retry_after = PollOutcome.PENDING, exc.retry_after
        except TokensmithError as exc:
            if not exc.transient:
                schedule.polls += 1  # the final event counts every request made
                raise
            outcome, retry_after = PollOutcome.TRANSIENT, exc.retry_after
            last_transient = exc
            logger.warning("device polling: transient failure, backing off: %s", exc)
        else:
            schedule.polls += 1
            logger.info("device login approved after %d polls", schedule.polls)
            return token
        at = clock()
        schedule.record(outcome, at, new_interval=new_interval, retry_after=retry_after)
        logger.debug(
            "device polling: %s; interval %.1f s; %.0f s left", outcome.value, schedule.interval, schedule.time_left(at)
        )
        if on_progress is not None:
            yield Notify(
                on_progress,
                PollProgress(
                    schedule.polls,
                    outcome,
                    schedule.interval,
                    schedule.time_left(at),
                    max(0.0, schedule.not_before - at),
                ),
            )


def _default_sleep(cancel: threading.Event | None) -> Callable[[float], bool]:
    return cancel.wait if cancel is not None else plain_sleep


def start_device_login(
    device_authorization_endpoint: str,
    auth: ClientAuth,
    *,
    scope: ScopeInput = None,
    audience: str | None = None,
    resource: str | Iterable[str] | None = None,
    transport: HttpSender | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DeviceAuthorization:
    """The device authorization request (RFC 8628 §3.1): client authentication as configured (a confidential
    client such as Google's sends its secret), ``scope``, ``audience`` (Auth0) and RFC 8707 ``resource``.
    The result records when it arrived on ``clock``, which polling must share."""
    if transport is None:
        from ._transport import Transport  # here: the async client shares this module without requests

        transport = Transport()
    flow = start_flow(
        device_authorization_endpoint, auth, scope=scope, audience=audience, resource=resource, clock=clock
    )
    return run(flow, SimpleIO(transport.post))


def start_flow(
    device_authorization_endpoint: str,
    auth: ClientAuth,
    *,
    scope: ScopeInput = None,
    audience: str | None = None,
    resource: str | Iterable[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Flow[DeviceAuthorization]:
    """``start_device_login`` as a flow."""
    make = functools.partial(
        device_authorization_request,
        device_authorization_endpoint,
        auth,
        scope=scope,
        params=[("audience", audience), ("resource", resource)],
    )
    request = yield from build(make, may_block(auth))  # a KMS signer's assertion: off the event loop
    response = yield Post(request)
    authorization = parse_device_authorization(response, request.secrets, cls=DeviceAuthorization)
    authorization = dataclasses.replace(authorization, received_monotonic=clock())
    logger.info(
        "device login started: user code %s, code valid for %d s, interval %d s",
        authorization.user_code,
        authorization.expires_in,
        authorization.interval,
    )
    return authorization


def device_login(
    device_authorization_endpoint: str,
    token_endpoint: str,
    auth: ClientAuth,
    *,
    on_prompt: Callable[[DevicePrompt], None],
    scope: ScopeInput = None,
    audience: str | None = None,
    resource: str | Iterable[str] | None = None,
    on_progress: Callable[[PollProgress], None] | None = None,
    cancel: threading.Event | None = None,
    login_timeout: float | None = None,
    timeout: Timeout | None = None,
    transport: HttpSender | None = None,
    accepted_token_types: Iterable[str] = ("bearer",),
) -> Token:
    """Run a whole device login and return the ``Token``: start it, hand the prompt to ``on_prompt`` (before
    the first poll), then poll until the user approves.

    ``login_timeout`` bounds the whole login, the first request included (the code's own lifetime bounds it
    anyway); ``timeout`` is the HTTP timeout of each request (ignored when a ``transport`` is given). Raises
    ``AccessDenied``, ``ExpiredToken``, ``DeviceFlowTimeout`` (``login_timeout`` passed),
    ``DeviceFlowCancelled`` (``cancel`` was set) or another typed error. ``KeyboardInterrupt`` passes through
    untouched; nothing is stored before a token arrives."""
    if transport is None:
        from ._transport import Transport

        transport = Transport() if timeout is None else Transport(timeout=timeout)
    flow = device_login_flow(
        device_authorization_endpoint,
        token_endpoint,
        auth,
        on_prompt=on_prompt,
        scope=scope,
        audience=audience,
        resource=resource,
        on_progress=on_progress,
        cancel=cancel,
        login_timeout=login_timeout,
        accepted_token_types=accepted_token_types,
    )
    return Token.from_response(run(flow, SimpleIO(transport.post, sleeper=_default_sleep(cancel))))


def device_login_flow(
    device_authorization_endpoint: str,
    token_endpoint: str,
    auth: ClientAuth,
    *,
    on_prompt: Callable[[DevicePrompt], Any],
    scope: ScopeInput = None,
    audience: str | None = None,
    resource: str | Iterable[str] | None = None,
    on_progress: Callable[[PollProgress], Any] | None = None,
    cancel: Cancel | None = None,
    login_timeout: float | None = None,
    accepted_token_types: Iterable[str] = ("bearer",),
    clock: Callable[[], float] = time.monotonic,
) -> Flow[TokenResponse]:
    """A whole device login as a flow: start, prompt, poll. Returns the token response (the driver turns it
    into a ``Token`` on its own clock)."""
    started = clock()
    authorization = yield from start_flow(
        device_authorization_endpoint, auth, scope=scope, audience=audience, resource=resource, clock=clock
    )
    yield Notify(on_prompt, DevicePrompt.from_authorization(authorization))
    request = yield from build(
        functools.partial(device_token_request, token_endpoint, auth, authorization.device_code), may_block(auth)
    )
    return (
        yield from polling_flow(
            request,
            authorization,
            # The caller's deadline covers the whole login, the first request included.
            login_timeout=None if login_timeout is None else max(0.0, login_timeout - (clock() - started)),
            cancel=cancel,
            on_progress=on_progress,
            accepted_token_types=accepted_token_types,
            clock=clock,
        )
    )


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
DevicePrompt.__module__ = "tokensmith"
PollProgress.__module__ = "tokensmith"
