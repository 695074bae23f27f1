"""The auth handlers with redirects around a C12 renewal, played as a user would: ``requests`` and ``httpx``
following redirects, the fault server as the resource server, a fake ``TokenSource`` counting renewals.

C12: a request rejected with ``401 invalid_token`` is re-sent once with the renewed token; whatever the client
sends next for that call (a redirect of the retried response) must carry the renewed token, not the rejected one.
No token ever goes to another host than the one it was sent to (requests and httpx strip ``Authorization``).
"""

from __future__ import annotations

import threading
import time

import requests

from fault_server import FaultServer, Reply
from tokensmith.integrations.requests_auth import TokenAuth as RequestsTokenAuth
from tokensmith.token import Token

INVALID_TOKEN = Reply(status=401, headers={"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'})
OK = Reply(json={"ok": True})


class FakeSource:
    """``TokenSource`` double: "at-1", "at-2", ...; renews on ``stale`` only if it is the current token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = Token(access_token="at-1", expires_at=time.time() + 3600)
        self.renewals = 0
        self.stales: list[Token] = []

    def get_token(self, *, stale: Token | None = None) -> Token:
        with self._lock:
            if stale is not None:
                self.stales.append(stale)
                if stale.access_token == self.current.access_token:
                    self.renewals += 1
                    self.current = Token(access_token=f"at-{self.renewals + 1}", expires_at=time.time() + 3600)
            return self.current


def _auth_headers(server: FaultServer, path: str = "/api") -> list[str]:
    return [r.headers.get("authorization", "") for r in server.recorded(path)]


def test_requests_redirect_of_the_retried_response_carries_the_renewed_token(fault_server: FaultServer) -> None:
    """401 invalid_token -> retry with at-2 -> 302 /final: /final gets at-2 (it got the rejected at-1)."""
    fault_server.script("/api", INVALID_TOKEN, Reply(status=302, headers={"Location": "/final"}))
    fault_server.default("/final", OK)
    source = FakeSource()
    with requests.Session() as session:
        session.auth = RequestsTokenAuth(source)
        resp = session.get(fault_server.url("/api"), timeout=10)
    assert resp.status_code == 200 and resp.url.endswith("/final")
    assert _auth_headers(fault_server) == ["Bearer at-1", "Bearer at-2"]
    assert _auth_headers(fault_server, "/final") == ["Bearer at-2"]
    assert source.renewals == 1
    assert [r.status_code for r in resp.history] == [302]  # requests rebuilds history from the retried response


def test_requests_307_of_the_retried_post_replays_body_with_the_renewed_token(fault_server: FaultServer) -> None:
    """The same for a POST redirected with 307: method and body kept, the renewed token sent."""
    fault_server.script("/api", INVALID_TOKEN, Reply(status=307, headers={"Location": "/final?x=1"}))
    fault_server.default("/final", OK)
    source = FakeSource()
    resp = requests.post(fault_server.url("/api"), data=b"payload", auth=RequestsTokenAuth(source), timeout=10)
    assert resp.status_code == 200
    (final,) = fault_server.recorded("/final")
    assert (final.method, final.body, final.query) == ("POST", b"payload", "x=1")
    assert final.headers["authorization"] == "Bearer at-2"
    assert source.renewals == 1
