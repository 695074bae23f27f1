"""Device polling against the fault server (RFC 8628 §3.5, C17; IDP-QUIRKS fixes 4, 5, 8).

Real HTTP, virtual time: the poller's clock and sleep are injected, so the schedule (the gaps it waits) is
asserted exactly, as counts and orderings, without slow or timing-dependent tests.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from fault_server import FaultServer, Reply
from tokensmith import exceptions as exc
from tokensmith import token_client as tc
from tokensmith._protocol.client_auth import NoClientAuth
from tokensmith._protocol.device import DeviceAuthorization, device_token_request
from tokensmith._protocol.polling import DEFAULT_MARGIN
from tokensmith._transport import Transport
from tokensmith.device import PollProgress, poll_device_token

TOKEN = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt-1"}
PENDING = Reply(status=400, json={"error": "authorization_pending"})
SLOW = Reply(status=400, json={"error": "slow_down"})


class VirtualTime:
    """A monotonic clock that advances only when the poller sleeps (plus a fixed cost per HTTP call)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False


def _poll(
    server: FaultServer,
    vt: VirtualTime,
    *,
    interval: int = 5,
    expires_in: int = 600,
    progress: list[PollProgress] | None = None,
) -> tuple[str, str | None]:
    auth = DeviceAuthorization("dev-code-secret", "ABCD", "https://v", expires_in, interval)
    request = device_token_request(server.url("/token"), NoClientAuth("pub"), auth.device_code)
    token = poll_device_token(
        Transport(requests.Session(), timeout=2),
        request,
        auth,
        clock=vt.clock,
        sleep=vt.sleep,
        on_progress=progress.append if progress is not None else None,
    )
    return token.access_token, token.refresh_token


def _gaps(vt: VirtualTime) -> list[float]:
    return [round(s - DEFAULT_MARGIN, 6) for s in vt.sleeps]


def test_slow_down_grows_the_interval_by_five_each_time_and_never_shrinks(fault_server: FaultServer) -> None:
    """Fix 4: the seed treated slow_down like authorization_pending."""
    fault_server.script("/token", PENDING, SLOW, PENDING, SLOW, PENDING, Reply(json=TOKEN))
    vt = VirtualTime()
    assert _poll(fault_server, vt) == ("at-1", "rt-1")
    assert _gaps(vt) == [5, 5, 10, 10, 15, 15]
    assert fault_server.count("/token") == 6


def test_a_larger_server_interval_with_slow_down_wins(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(status=200, json={"error": "slow_down", "interval": 30}), Reply(json=TOKEN))
    vt = VirtualTime()
    _poll(fault_server, vt)
    assert _gaps(vt) == [5, 30]


def test_persistent_slow_down_stops_with_an_explanation(fault_server: FaultServer) -> None:
    fault_server.default("/token", SLOW)
    vt = VirtualTime()
    with pytest.raises(exc.PersistentSlowDown, match="clock"):
        _poll(fault_server, vt, expires_in=10_000)
    assert fault_server.count("/token") == 5


def test_http_200_pending_and_errors_github_style(fault_server: FaultServer) -> None:
    fault_server.script(
        "/token",
        Reply(status=200, json={"error": "authorization_pending"}),
        Reply(status=200, json={"error": "slow_down"}),
        Reply(json=TOKEN),
    )
    vt = VirtualTime()
    assert _poll(fault_server, vt)[0] == "at-1"
    assert _gaps(vt) == [5, 5, 10]


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("access_denied", exc.AccessDenied),
        ("expired_token", exc.ExpiredToken),
        ("invalid_grant", exc.InvalidGrant),
        ("weird_new_error", exc.OAuthError),
    ],
)
def test_terminal_errors_stop_at_once(fault_server: FaultServer, code: str, cls: type[Exception]) -> None:
    """Fix 5 / C17: access_denied, expired_token and any unknown error end polling on the spot."""
    fault_server.script("/token", PENDING, Reply(status=400, json={"error": code}))
    fault_server.default("/token", Reply(json=TOKEN))
    with pytest.raises(cls) as info:
        _poll(fault_server, VirtualTime())
    assert type(info.value) is cls
    assert fault_server.count("/token") == 2


def test_transient_failures_back_off_and_continue(fault_server: FaultServer) -> None:
    """Fix 8 / C17: a 502, a dropped connection or a 503 in the middle does not end the login."""
    fault_server.script(
        "/token",
        PENDING,
        Reply(status=502, body="<html>bad gateway</html>", content_type="text/html"),
        Reply(drop=True),
        Reply(status=503, json={"error": "temporarily_unavailable"}, headers={"Retry-After": "45"}),
        PENDING,
        Reply(json=TOKEN),
    )
    vt = VirtualTime()
    progress: list[PollProgress] = []
    assert _poll(fault_server, vt, progress=progress)[0] == "at-1"
    # 5 (first), 5 (after pending), 10 and 20 (backoff), 45 (Retry-After beats 40), 5 (reset after pending).
    assert _gaps(vt) == [5, 5, 10, 20, 45, 5]
    assert [p.outcome.value for p in progress] == [
        "authorization_pending",
        "transient_error",
        "transient_error",
        "transient_error",
        "authorization_pending",
        "approved",
    ]
    assert progress[-1].polls == 6  # the final event counts every request


def test_read_timeout_mid_poll_is_survived(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=TOKEN, delay=3), Reply(json=TOKEN))
    vt = VirtualTime()
    assert _poll(fault_server, vt)[0] == "at-1"
    assert fault_server.count("/token") == 2 and _gaps(vt) == [5, 10]


def test_no_request_after_the_deadline(fault_server: FaultServer) -> None:
    """C17: give up at expires_in; the last poll goes out before it, none after."""
    fault_server.default("/token", PENDING)
    vt = VirtualTime()
    with pytest.raises(exc.ExpiredToken):
        _poll(fault_server, vt, interval=5, expires_in=22)
    assert fault_server.count("/token") == 4  # at ~5, ~10, ~15, ~20; the next (~25) would be too late
    assert vt.now < 1000.0 + 22


@pytest.mark.parametrize("interval", [600, 900])
def test_an_interval_as_long_as_the_code_life_still_polls_once_before_expiry(
    fault_server: FaultServer, interval: int
) -> None:
    """Keycloak lets an admin set a per-client polling interval of 600 s next to its default 600 s code lifespan
    (IDP-QUIRKS). Waiting one interval before the first poll then leaves no poll at all: the login failed the
    moment the prompt was shown, as "expired" with 0 polls, although the person had 10 minutes to approve. The
    first poll goes out just before the code expires (RFC 8628 §3.5's wait binds each *new* request)."""
    fault_server.script("/token", Reply(json=TOKEN))
    vt = VirtualTime()
    assert _poll(fault_server, vt, interval=interval, expires_in=600) == ("at-1", "rt-1")
    assert fault_server.count("/token") == 1
    assert len(vt.sleeps) == 1 and 590 <= vt.now - 1000.0 < 600  # late in the code's life, never after it


def test_giving_up_before_the_code_expires_says_so(fault_server: FaultServer) -> None:
    """The next poll the interval allows would be too late: stop, but do not claim the code already expired."""
    fault_server.default("/token", PENDING)
    vt = VirtualTime()
    with pytest.raises(exc.ExpiredToken) as info:
        _poll(fault_server, vt, interval=300, expires_in=600)
    assert fault_server.count("/token") == 1
    assert "expires in 300 s" in str(info.value) and "expired after" not in str(info.value)


def test_retry_after_past_the_deadline_gives_up_without_waiting(fault_server: FaultServer) -> None:
    """The server's own answer (429, busy for an hour) ends the login, not a made-up "expired" (issue 7 item 4)."""
    fault_server.default("/token", Reply(status=429, body="busy", headers={"Retry-After": "3600"}))
    vt = VirtualTime()
    with pytest.raises(exc.InvalidResponse) as info:
        _poll(fault_server, vt, expires_in=600)
    assert info.value.status_code == 429 and info.value.retry_after == 3600 and info.value.transient
    assert fault_server.count("/token") == 1 and len(vt.sleeps) == 1


def test_compat_poll_uses_real_time_and_the_given_session(fault_server: FaultServer) -> None:
    """Fix 2: poll_token_endpoint now takes a session; its headers (a proxy's credentials, say) go on every poll."""
    fault_server.script("/token", PENDING, PENDING, Reply(json=TOKEN))
    session = requests.Session()
    session.headers["Proxy-Authorization"] = "Bearer iap-token"
    resp = tc.DeviceCodeResponse("dc", "UC", "https://v", 30, 0)
    assert tc.poll_token_endpoint(resp, fault_server.url("/token"), "pub", session=session) == ("at-1", "rt-1", 300)
    polls = fault_server.recorded("/token")
    assert len(polls) == 3 and all(p.headers.get("proxy-authorization") == "Bearer iap-token" for p in polls)
    assert all(
        dict(p.form) == {"grant_type": tc.GrantType.DEVICE_CODE.value, "client_id": "pub", "device_code": "dc"}
        for p in polls
    )
    assert [a.at for a in polls] == sorted(a.at for a in polls)


def test_compat_poll_sends_every_request_through_the_proxy(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fix 2 / C32: http_proxy_url applies to each poll. The fault server plays the proxy for an unroutable
    target; it sees the absolute-form request line of every poll."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    fault_server.script("/token", PENDING, Reply(json=TOKEN))
    resp = tc.DeviceCodeResponse("dc", "UC", "https://v", 30, 0)
    result = tc.poll_token_endpoint(resp, "http://127.0.0.1:9/token", "pub", http_proxy_url=fault_server.base_url)
    assert result[0] == "at-1" and fault_server.count("/token") == 2


def test_cancel_from_another_thread_stops_a_sleeping_poller(fault_server: FaultServer) -> None:
    """Cancellation: an Event set elsewhere wakes the poller; no request follows."""
    fault_server.default("/token", PENDING)
    cancel = threading.Event()
    resp = tc.DeviceCodeResponse("dc", "UC", "https://v", 600, 30)  # would sleep 30 s before the first poll
    errors: list[BaseException] = []

    def run() -> None:
        try:
            tc.poll_token_endpoint(resp, fault_server.url("/token"), "pub", cancel=cancel)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)
    cancel.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], exc.DeviceFlowCancelled)
    assert fault_server.count("/token") == 0
