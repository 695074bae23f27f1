"""Issue 7, A.3-A.5 and item 12: compat quirks kept on purpose, and device polling edge cases, through the
drop-in module against the fault server (or the MagicMock doubles the seed's users write)."""

from __future__ import annotations

import logging
from unittest.mock import MagicMock, patch

import pytest
import requests

import tokensmith
from fault_server import FaultServer, Reply
from tokensmith import token_client as tc

TOKEN = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt-1"}
PENDING = Reply(status=400, json={"error": "authorization_pending"})


def test_scopes_holding_a_split_python_list_literal_are_sent_as_the_seed_sent_them(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    """flytekit's config yields ``["['offline'", " 'all']"]`` from an environment variable; the seed's
    ``.strip("[]'")`` turned that into ``offline all``. Kept (compat module only), with one warning."""
    fault_server.default("/token", Reply(json=TOKEN))
    with caplog.at_level(logging.WARNING, logger="tokensmith"):
        for _ in range(2):
            tc.get_token(fault_server.url("/token"), client_id="c", scopes=["['offline'", " 'all']"])
        tc.get_token(fault_server.url("/token"), client_id="c", scopes=["['offline', 'all']"])
    scopes = [dict(r.form)["scope"] for r in fault_server.recorded("/token")]
    assert scopes == ["offline all"] * 3
    assert sum("list literal" in r.getMessage() for r in caplog.records) <= 1  # once per process


def test_ordinary_scopes_are_untouched(fault_server: FaultServer) -> None:
    fault_server.default("/token", Reply(json=TOKEN))
    tc.get_token(fault_server.url("/token"), client_id="c", scopes=["openid", "api:[read]"])
    assert dict(fault_server.recorded("/token")[0].form)["scope"] == "openid api:[read]"
    with pytest.raises(ValueError):  # a `"` in a scope token is still refused (C4), not mangled
        tc.get_token(fault_server.url("/token"), client_id="c", scopes=['say"hi'])


def _response(body: dict[str, object]) -> MagicMock:
    response = MagicMock()
    response.ok = True
    response.status_code = 200
    response.json.return_value = body
    return response


@patch("tokensmith.token_client.requests.Session")
def test_a_swapped_return_value_under_one_patch_is_honoured(mock_session: MagicMock) -> None:
    """A user test that swaps ``mock_session.return_value`` between two calls under the same patch gets the
    new one (the pooled session used to keep serving the first double)."""
    first, second = MagicMock(), MagicMock()
    first.post.return_value = _response({"access_token": "first", "expires_in": 60})
    second.post.return_value = _response({"access_token": "second", "expires_in": 60})
    mock_session.return_value = first
    assert tc.get_token("https://idp.example/token", client_id="c")[0] == "first"
    mock_session.return_value = second
    assert tc.get_token("https://idp.example/token", client_id="c")[0] == "second"
    assert first.post.call_count == 1 and second.post.call_count == 1


def test_polling_that_cannot_reach_the_server_ends_with_the_transport_error() -> None:
    """A.4: not ``ExpiredToken`` ("expired after N s") while the code still had life left: the caller learns the
    server was unreachable, with the requests exception chained."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    resp = tc.DeviceCodeResponse("dc-secret-value", "ABCD", "https://v", 3, 1)
    with pytest.raises(requests.ConnectionError) as info:
        tc.poll_token_endpoint(resp, f"http://127.0.0.1:{port}/token", "pub", session=requests.Session())
    assert isinstance(info.value, tokensmith.ConnectError)
    assert not isinstance(info.value, tokensmith.ExpiredToken | tokensmith.AuthenticationError)
    assert isinstance(info.value.__cause__, requests.ConnectionError)


def test_polling_through_a_502_then_success(fault_server: FaultServer) -> None:
    """Transient answers back off but keep polling while the code lives; a last try happens before expiry."""
    fault_server.script(
        "/token", Reply(status=502, body="<html>bad gateway</html>", content_type="text/html"), Reply(json=TOKEN)
    )
    resp = tc.DeviceCodeResponse("dc-secret-value", "ABCD", "https://v", 4, 1)
    assert tc.poll_token_endpoint(resp, fault_server.url("/token"), "pub")[0] == "at-1"
    assert fault_server.count("/token") == 2


def test_device_authorization_carries_client_id_next_to_basic(fault_server: FaultServer) -> None:
    """A.5: django-oauth-toolkit rejects a device authorization request without ``client_id`` in the body, even
    when the client authenticates with Basic (RFC 8628 §3.1 allows it there). The token request keeps exactly
    one authentication method (C2)."""
    fault_server.default(
        "/device",
        Reply(json={"device_code": "dc-1", "user_code": "U", "verification_uri": "https://v", "expires_in": 60}),
    )
    fault_server.default("/token", Reply(json=TOKEN))
    auth = tokensmith.ClientSecretBasic("dot-client", "dot-secret")
    tokensmith.device_login(
        fault_server.url("/device"),
        fault_server.url("/token"),
        auth,
        on_prompt=lambda prompt: None,
        scope="read",
        transport=tokensmith.Transport(requests.Session()),
    )
    (device,) = fault_server.recorded("/device")
    assert dict(device.form)["client_id"] == "dot-client" and device.headers["authorization"].startswith("Basic ")
    (poll,) = fault_server.recorded("/token")
    assert "client_id" not in dict(poll.form) and "client_secret" not in dict(poll.form)
    header = tc.get_basic_authorization_header("dot-client", "dot-secret")
    tc.get_device_code(fault_server.url("/device"), "dot-client", authorization_header=header)
    assert dict(fault_server.recorded("/device")[-1].form)["client_id"] == "dot-client"


class FakeClock:
    """A monotonic clock that moves only when the poller sleeps."""

    def __init__(self) -> None:
        self.now = 50_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False


def test_polling_measures_the_code_life_on_the_clock_it_is_given(fault_server: FaultServer) -> None:
    """Item 12: the code's remaining life is measured on the injected monotonic clock from when the device
    authorization arrived, not on the wall clock (which may jump: WSL, suspended VMs)."""
    fault_server.default(
        "/device",
        Reply(json={"device_code": "dc-1", "user_code": "U", "verification_uri": "https://v", "expires_in": 30}),
    )
    fault_server.default("/token", PENDING)
    clock = FakeClock()
    transport = tokensmith.Transport(requests.Session())
    from tokensmith.device import device_token_request, poll_device_token, start_device_login

    auth = tokensmith.NoClientAuth("pub")
    authorization = start_device_login(fault_server.url("/device"), auth, transport=transport, clock=clock)
    assert authorization.received_monotonic == clock.now
    clock.now += 20  # the person took 20 s to read the prompt: 10 s of the code's life remain
    request = device_token_request(fault_server.url("/token"), auth, authorization.device_code)
    with pytest.raises(tokensmith.ExpiredToken):
        poll_device_token(transport, request, authorization, clock=clock, sleep=clock.sleep)
    # One poll at ~5 s after those 20 s (the next, at ~10 s, would be past expiry); the wall clock would have
    # allowed 5 polls over 30 s.
    assert fault_server.count("/token") == 1


def test_an_interval_of_zero_is_floored_after_the_first_poll(fault_server: FaultServer) -> None:
    """Item 12: ``interval: 0`` must not become a tight loop: the first poll goes out at once (one early poll is
    not a loop), every later gap is at least 1 s."""
    fault_server.default("/token", PENDING)
    clock = FakeClock()
    from tokensmith.device import DeviceAuthorization, device_token_request, poll_device_token

    authorization = DeviceAuthorization("dc", "U", "https://v", 10, 0, received_monotonic=clock.now)
    request = device_token_request(fault_server.url("/token"), tokensmith.NoClientAuth("pub"), "dc")
    with pytest.raises(tokensmith.ExpiredToken):
        poll_device_token(
            tokensmith.Transport(requests.Session()), request, authorization, clock=clock, sleep=clock.sleep
        )
    assert clock.sleeps[0] < 0.1 and all(gap >= 1.0 for gap in clock.sleeps[1:])
    assert fault_server.count("/token") <= 10
