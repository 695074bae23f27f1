"""``tokensmith.device.device_login`` against the real IdP: approve, deny, expire, confidential client, and
cancellation mid-poll (RFC 8628; C13-C17). Requests are counted with a real ``requests.Session`` subclass."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from counting_session import CountingSession
from idp_harness import DEVICE_CONFIDENTIAL, DEVICE_PUBLIC, LocalIdP
from tokensmith import ClientSecretBasic, DevicePrompt, NoClientAuth, PollProgress, Transport, device_login
from tokensmith import exceptions as exc
from tokensmith.device import device_token_request, poll_device_token, start_device_login

pytestmark = pytest.mark.idp
SCOPE = ["openid", "offline_access"]


def _login(
    idp: LocalIdP, user_action: str | None, session: CountingSession, *, act_at_once: bool = False, **kwargs: Any
) -> Any:
    """``act_at_once``: the person's action is done before the prompt returns, so before the first poll (else it
    runs beside the polling, and a loaded IdP may finish it only after the first poll)."""
    prompts: list[DevicePrompt] = []

    def on_prompt(prompt: DevicePrompt) -> None:
        prompts.append(prompt)
        if user_action is not None:
            act = getattr(idp, user_action)
            if act_at_once:
                act(prompt.user_code)
            else:
                threading.Thread(target=act, args=(prompt.user_code,), daemon=True).start()

    kwargs.setdefault("auth", NoClientAuth(DEVICE_PUBLIC.client_id))
    token = device_login(
        idp.device_authorization_endpoint,
        idp.token_endpoint,
        kwargs.pop("auth"),
        on_prompt=on_prompt,
        scope=SCOPE,
        transport=Transport(session),
        **kwargs,
    )
    return token, prompts


def test_approve(idp: LocalIdP) -> None:
    session = CountingSession()
    progress: list[PollProgress] = []
    token, prompts = _login(idp, "approve", session, on_progress=progress.append)
    assert token.refresh_token and token.token_type.lower() == "bearer" and token.lifetime == 3600
    (prompt,) = prompts  # the prompt came before polling, once
    assert prompt.user_code and prompt.verification_uri.startswith(idp.issuer) and prompt.interval == 5
    assert "device_code" not in prompt.raw  # never handed to the UI (C15)
    assert progress[-1].outcome.value == "approved"  # the final event, after one per non-final answer
    assert session.count(idp.token_endpoint) == len(progress) == progress[-1].polls


def test_deny(idp: LocalIdP) -> None:
    session = CountingSession()
    with pytest.raises(exc.AccessDenied):
        _login(idp, "deny", session, act_at_once=True)  # denied before the first poll: it is the one that learns so
    assert session.count(idp.token_endpoint) == 1  # stopped at once


def test_expire(idp_short_device_ttl: LocalIdP) -> None:
    """The 3 s code would expire before a first poll after the 5 s interval: the one poll goes out just before
    expiry instead (the person had the code's whole life to approve), is pending, and none follows it."""
    session = CountingSession()
    with pytest.raises(exc.ExpiredToken) as info:
        _login(idp_short_device_ttl, None, session)
    assert session.count(idp_short_device_ttl.token_endpoint) == 1
    # Decided locally (the poll was pending; the next would come after expiry), or by the IdP when a loaded machine
    # delivered that last poll after the code's 3 s had run out: either way one poll, and an ExpiredToken.
    assert info.value.status_code in (None, 400)


def test_confidential_device_client(idp: LocalIdP) -> None:
    assert DEVICE_CONFIDENTIAL.client_secret
    auth = ClientSecretBasic(DEVICE_CONFIDENTIAL.client_id, DEVICE_CONFIDENTIAL.client_secret)
    token, _ = _login(idp, "approve", CountingSession(), auth=auth)
    assert token.refresh_token


def test_cancel_mid_poll_stops_and_sends_nothing_more(idp: LocalIdP) -> None:
    session = CountingSession()
    cancel = threading.Event()
    first_poll_done = threading.Event()
    result: list[BaseException] = []

    def run() -> None:
        try:
            _login(
                idp,
                None,
                session,
                cancel=cancel,
                on_progress=lambda p: None if p.outcome.final else first_poll_done.set(),
            )
        except BaseException as e:
            result.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    assert first_poll_done.wait(30)  # one poll answered authorization_pending; now sleeping 5 s
    polls_before = session.count(idp.token_endpoint)
    cancel.set()
    thread.join(timeout=30)
    assert len(result) == 1 and isinstance(result[0], exc.DeviceFlowCancelled)
    assert session.count(idp.token_endpoint) == polls_before == 1  # no poll after the cancel


def test_caller_timeout(idp: LocalIdP) -> None:
    """The caller's own deadline, on an injected monotonic clock: room for one poll at ~5 s, not a second at
    ~10 s; counted, not timed."""
    session = CountingSession()
    transport = Transport(session)
    clock = FakeMonotonic()
    auth = NoClientAuth(DEVICE_PUBLIC.client_id)
    authorization = start_device_login(
        idp.device_authorization_endpoint, auth, scope=SCOPE, transport=transport, clock=clock
    )
    request = device_token_request(idp.token_endpoint, auth, authorization.device_code)
    with pytest.raises(exc.DeviceFlowTimeout):
        poll_device_token(transport, request, authorization, login_timeout=6, clock=clock, sleep=clock.sleep)
    assert session.count(idp.token_endpoint) == 1 and clock.slept == [pytest.approx(5.05)]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return False
