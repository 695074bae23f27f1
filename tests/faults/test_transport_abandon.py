"""Never leak a thread on a server that trickles (C3, C27): the caller is cut off at the total deadline, and the
worker that ran the request is freed too, even while the server is still dribbling out the status line and
headers (http.client would wait for 64 KiB per header line: days, at a byte a second). What is observed is the
server seeing the client hang up, long before the trickled response could have been sent whole."""

from __future__ import annotations

import threading

import pytest

import tokensmith
from fault_server import FaultServer, Reply
from token_replies import token_body
from tokensmith import token_client

TRICKLE = 0.2  # seconds per byte: the head alone (~100 bytes) takes about 20 s


def _hung_up(server: FaultServer) -> bool:
    for _ in range(100):  # bounded: 10 s, half the time the head alone would take
        if server.trickles_cut_short:
            return True
        threading.Event().wait(0.1)
    return False


def test_a_token_client_request_abandoned_mid_head_frees_its_connection(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=token_body(1), trickle=TRICKLE))
    client = tokensmith.TokenClient(
        fault_server.url("/token"),
        auth=tokensmith.ClientSecretBasic("svc", "svc-secret"),
        timeout=0.5,
        retry=tokensmith.RetryPolicy(attempts=1),
    )
    with pytest.raises(tokensmith.RequestTimeout):
        client.get_token()
    assert _hung_up(fault_server)
    assert fault_server.count("/token") == 1


def test_the_compat_module_abandoned_mid_head_frees_its_connection(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=token_body(1), trickle=TRICKLE))
    with pytest.raises(tokensmith.RequestTimeout):
        token_client.get_token(fault_server.url("/token"), authorization_header="Basic c3ZjOnN2Yw==", timeout=0.5)
    assert _hung_up(fault_server)
