"""A process forked after a token was fetched (a pre-forking server, multiprocessing's fork start method) must not
send on the parent's keep-alive connection: both processes would then read one socket, and a token response meant
for one (perhaps another client's, the pool is process-wide) could be read by the other. Never leak.

Asserted at the server: which TCP connection (client port) each request came in on."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

import tokensmith
from fault_server import FaultServer, Reply
from token_replies import token_body
from tokensmith import token_client as tc

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _in_child(call: Callable[[], object]) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 3
        try:
            call()
            status = 0
        finally:
            os._exit(status)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0


def test_a_forked_child_opens_its_own_connection_to_the_token_endpoint(fault_server: FaultServer) -> None:
    fault_server.default("/token", Reply(json=token_body(1, 3600)))
    client = tokensmith.TokenClient(fault_server.url("/token"), auth=tokensmith.ClientSecretBasic("svc", "secret"))
    client.fetch_client_credentials()
    client.fetch_client_credentials()  # the parent's pooled connection is kept alive and reused
    _in_child(client.fetch_client_credentials)
    client.fetch_client_credentials()  # the parent still has its own
    parent, again, child, parent_after = (r.peer for r in fault_server.recorded("/token"))
    assert parent == again == parent_after
    assert child != parent


def test_the_compat_module_in_a_forked_child_opens_its_own_connection(fault_server: FaultServer) -> None:
    fault_server.default("/token", Reply(json=token_body(1, 3600)))
    url = fault_server.url("/token")
    tc.get_token(url, authorization_header="Basic eDp5")
    _in_child(lambda: tc.get_token(url, authorization_header="Basic eDp5"))
    parent, child = (r.peer for r in fault_server.recorded("/token"))
    assert child != parent
