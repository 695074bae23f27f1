"""The polling driver over random server answer sequences (RFC 8628 §3.5, C17), on virtual time with an
in-memory transport: never earlier than the current interval, never past the deadline, stops on the first
terminal answer, returns the token when one comes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tokensmith import exceptions as exc
from tokensmith._protocol.client_auth import NoClientAuth
from tokensmith._protocol.device import DeviceAuthorization, device_token_request
from tokensmith._protocol.messages import HttpRequest, HttpResponse
from tokensmith._protocol.polling import DEFAULT_MARGIN, FIRST_POLL_LEAD, MIN_INTERVAL
from tokensmith.device import poll_device_token

TERMINAL = {
    "access_denied": exc.AccessDenied,
    "expired_token": exc.ExpiredToken,
    "invalid_grant": exc.InvalidGrant,
    "unknown_thing": exc.OAuthError,
    "invalid_client": exc.InvalidClient,
}
ANSWERS = ["pending", "slow_down", "502", "503-retry", "timeout", "token", *TERMINAL]


@dataclass
class ScriptedServer:
    """Stands in for the transport: answers from a script and records virtual send times."""

    script: list[str]
    latency: float
    now: float = 0.0
    sent_at: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        assert seconds >= 0
        self.now += seconds
        return False

    def post(self, request: HttpRequest) -> HttpResponse:
        self.sent_at.append(self.now)
        answer = self.script[len(self.sent_at) - 1] if len(self.sent_at) <= len(self.script) else "pending"
        self.now += self.latency
        if answer == "timeout":
            raise exc.RequestTimeout("timed out")
        if answer == "502":
            return HttpResponse(502, {"content-type": "text/html"}, b"<html>bad gateway</html>")
        if answer == "503-retry":
            return HttpResponse(503, {"retry-after": "17"}, b'{"error": "temporarily_unavailable"}')
        if answer == "token":
            return HttpResponse(200, {}, b'{"access_token": "at", "token_type": "Bearer"}')
        code = {"pending": "authorization_pending"}.get(answer, answer)
        return HttpResponse(400, {}, json.dumps({"error": code}).encode())


@settings(max_examples=400, deadline=None)
@given(
    script=st.lists(st.sampled_from(ANSWERS), max_size=25),
    interval=st.integers(0, 10),
    expires_in=st.integers(1, 400),
    latency=st.floats(0, 2),
)
def test_driver_properties(script: list[str], interval: int, expires_in: int, latency: float) -> None:
    server = ScriptedServer(script, latency)
    auth = DeviceAuthorization("dc", "UC", "https://v", expires_in, interval)
    request = device_token_request("https://idp/token", NoClientAuth("c"), "dc")
    outcome: object
    try:
        outcome = poll_device_token(server, request, auth, clock=server.clock, sleep=server.sleep)  # type: ignore[arg-type]
    except exc.TokensmithError as error:
        outcome = error
    n = len(server.sent_at)
    answered = script[:n] + ["pending"] * max(0, n - len(script))

    # Never past the deadline.
    assert all(t < expires_in for t in server.sent_at)
    # Never earlier than the interval in force, measured from the previous answer. The first poll waits the
    # server's own interval; later gaps are at least MIN_INTERVAL (issue 7 item 12: interval 0 is no loop).
    current = float(interval)
    previous_answer = 0.0
    for i, sent in enumerate(server.sent_at):
        if i == 0 and interval + DEFAULT_MARGIN >= expires_in:
            # An interval as long as the code's life: the one poll goes out FIRST_POLL_LEAD before expiry.
            assert abs(sent - max(0.0, expires_in - FIRST_POLL_LEAD)) < 1e-9
        else:
            assert sent - previous_answer >= current + DEFAULT_MARGIN - 1e-9
        current = max(current, MIN_INTERVAL)
        if answered[i] == "slow_down":
            current += 5
        previous_answer = sent + latency
    # Stops at the first terminal answer or token; nothing is sent after it.
    for i, answer in enumerate(answered):
        if answer == "token":
            assert i == n - 1 and not isinstance(outcome, Exception)
        if answer in TERMINAL:
            assert i == n - 1 and type(outcome) is TERMINAL[answer]
    if isinstance(outcome, exc.ExpiredToken) and answered[-1:] != ["expired_token"]:
        # Gave up locally: the next poll could not have gone out before the deadline, and the server had answered.
        assert n == 0 or server.sent_at[-1] + latency + current + DEFAULT_MARGIN >= expires_in - 1e-9
        assert answered[-1:] not in (["502"], ["503-retry"], ["timeout"])
    if n and answered[-1] in ("502", "503-retry", "timeout") and isinstance(outcome, Exception):
        # Issue 7 item 4: a login that ends because the server could not be reached says so (the last
        # transient error), not "expired".
        assert outcome.transient and not isinstance(outcome, exc.ExpiredToken)
