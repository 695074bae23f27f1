"""Self-tests for tests/fault_server.py: every fault it can inject, proven with `requests`."""

# The fixture is imported by name, so test arguments "redefine" it:
# ruff: noqa: F811

from __future__ import annotations

import socket
import threading

import pytest
import requests

from fault_server import (
    FaultServer,
    Reply,
    fault_server,  # noqa: F401
)

TIMEOUT = (10.0, 30.0)  # bounds for answers that must come: generous, a loaded machine is slow


def test_scripted_replies_are_fifo_then_default_then_404(fault_server: FaultServer) -> None:
    fault_server.script(
        "/token",
        Reply(status=503, body="<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
        Reply(json={"error": "invalid_grant", "error_description": "nope"}),  # HTTP-200 error body
    )
    fault_server.script("/token", Reply(status=400, json={"error": "invalid_client"}))
    fault_server.default("/token", Reply(json={"access_token": "t", "token_type": "Bearer"}))

    got = [requests.post(fault_server.url("/token?x=1"), timeout=TIMEOUT) for _ in range(4)]

    assert [r.status_code for r in got] == [503, 200, 400, 200]
    assert got[0].headers["Content-Type"] == "text/html"
    assert "Bad Gateway" in got[0].text
    assert got[1].json() == {"error": "invalid_grant", "error_description": "nope"}
    assert got[1].headers["Content-Type"] == "application/json"
    assert got[3].json()["access_token"] == "t"
    assert fault_server.pending("/token") == 0

    missing = requests.get(fault_server.url("/nowhere"), timeout=TIMEOUT)
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found"}
    assert fault_server.count("/token") == 4
    assert fault_server.count("/nowhere") == 1
    assert fault_server.count() == 5
    assert [r.query for r in fault_server.recorded("/token")] == ["x=1"] * 4


def test_records_form_pairs_in_order_with_repeats(fault_server: FaultServer) -> None:
    fault_server.default("/token", Reply(json={"ok": True}))
    data = [("grant_type", "client_credentials"), ("scope", "a"), ("scope", "b c"), ("empty", "")]
    requests.post(fault_server.url("/token"), data=data, headers={"X-Trace": "1"}, auth=("id", "s"), timeout=TIMEOUT)
    requests.post(fault_server.url("/token"), data=b'{"a": 1}', timeout=TIMEOUT)  # no form content-type

    first, second = fault_server.recorded("/token")
    assert first.method == "POST"
    assert first.form == data
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    assert first.headers["x-trace"] == "1"
    assert first.headers["authorization"].startswith("Basic ")
    assert first.body == b"grant_type=client_credentials&scope=a&scope=b+c&empty="
    assert second.form == []
    assert second.body == b'{"a": 1}'
    assert first.at <= second.at


def test_keep_alive_connection_is_reused(fault_server: FaultServer) -> None:
    fault_server.default("/a", Reply(json={"n": 1}))
    with requests.Session() as s:
        for _ in range(3):
            assert s.post(fault_server.url("/a"), data={"k": "v"}, timeout=TIMEOUT).json() == {"n": 1}
    assert len({r.peer for r in fault_server.recorded("/a")}) == 1


@pytest.mark.parametrize("omit_length", [False, True])
def test_stream_bytes_delivers_exact_length(fault_server: FaultServer, omit_length: bool) -> None:
    size = 3 * 1024 * 1024 + 7
    fault_server.script("/big", Reply(stream_bytes=size, omit_length=omit_length))
    r = requests.get(fault_server.url("/big"), timeout=TIMEOUT)
    assert r.status_code == 200
    assert len(r.content) == size
    assert set(r.content[:100]) == {ord("x")}
    if omit_length:
        assert "Content-Length" not in r.headers
    else:
        assert r.headers["Content-Length"] == str(size)


def test_client_abandoning_a_huge_stream_is_harmless(fault_server: FaultServer) -> None:
    fault_server.script("/huge", Reply(stream_bytes=512 * 1024 * 1024))
    fault_server.default("/after", Reply(json={"ok": True}))
    with requests.get(fault_server.url("/huge"), stream=True, timeout=TIMEOUT) as r:
        assert len(next(r.iter_content(65536))) > 0
    assert requests.get(fault_server.url("/after"), timeout=TIMEOUT).json() == {"ok": True}
    assert fault_server.errors == []


def test_delay_causes_read_timeout_without_blocking_others(fault_server: FaultServer) -> None:
    fault_server.script("/slow", Reply(delay=30, json={"late": True}))
    fault_server.default("/fast", Reply(json={"fast": True}))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(fault_server.url("/slow"), timeout=(2.0, 0.2))
    # The slow handler is still sleeping; another request is served meanwhile.
    assert requests.get(fault_server.url("/fast"), timeout=TIMEOUT).json() == {"fast": True}
    assert [r.path for r in fault_server.recorded()] == ["/slow", "/fast"]


def test_hold_keeps_a_reply_until_its_event_is_set_or_the_server_stops() -> None:
    srv = FaultServer().start()
    gate, dropped = threading.Event(), threading.Event()
    srv.script("/held", Reply(json={"held": True}, hold=gate), Reply(json={}, hold=dropped))
    srv.default("/fast", Reply(json={"fast": True}))
    answers: list[object] = []

    def call() -> None:
        try:
            answers.append(requests.get(srv.url("/held"), timeout=(10.0, 30.0)).json())
        except requests.RequestException as exc:
            answers.append(exc)

    first = threading.Thread(target=call, daemon=True)
    first.start()
    assert srv.wait_for(1, "/held")
    assert requests.get(srv.url("/fast"), timeout=TIMEOUT).json() == {"fast": True}  # served meanwhile
    first.join(0.2)
    assert first.is_alive() and answers == []  # still held
    gate.set()
    first.join(30)
    assert answers == [{"held": True}]

    second = threading.Thread(target=call, daemon=True)
    second.start()
    assert srv.wait_for(2, "/held")
    srv.stop()  # never released: the stop drops it
    second.join(30)
    assert not second.is_alive() and isinstance(answers[1], requests.exceptions.ConnectionError)


def test_drop_raises_connection_error(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(drop=True), Reply(json={"ok": True}))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(fault_server.url("/token"), data={"a": "b"}, timeout=TIMEOUT)
    assert requests.post(fault_server.url("/token"), timeout=TIMEOUT).json() == {"ok": True}
    assert fault_server.count("/token") == 2


def test_redirect_location_passthrough(fault_server: FaultServer) -> None:
    target = fault_server.url("/elsewhere")
    fault_server.script("/token", Reply(status=307, headers={"Location": target}))
    r = requests.post(fault_server.url("/token"), data={"a": "b"}, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 307
    assert r.headers["Location"] == target
    assert fault_server.count("/elsewhere") == 0


def test_retry_after_header(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(status=429, json={"error": "slow_down"}, headers={"Retry-After": "2"}))
    r = requests.post(fault_server.url("/token"), timeout=TIMEOUT)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"
    assert r.json() == {"error": "slow_down"}


def test_explicit_lying_content_length_truncates(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(body=b'{"access_', headers={"Content-Length": "100"}))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(fault_server.url("/token"), timeout=TIMEOUT)


def test_stop_is_prompt_during_delay_and_closes_listener() -> None:
    srv = FaultServer().start()
    port = srv.port
    srv.script("/slow", Reply(delay=60, json={}))
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(requests.get(srv.url("/slow"), timeout=(2.0, 30.0)).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    client = threading.Thread(target=call, daemon=True)
    client.start()
    assert srv.wait_for(1, "/slow")

    srv.stop()  # the scripted 60 s delay is cut short: the connection is dropped, not answered
    client.join(timeout=30)
    assert not client.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], requests.exceptions.ConnectionError)  # dropped, not answered
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
