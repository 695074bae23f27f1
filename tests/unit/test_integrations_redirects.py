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


def test_requests_401_invalid_token_after_a_same_host_redirect_is_renewed_and_retried(
    fault_server: FaultServer,
) -> None:
    """GET /api -> 301 /api/ -> 401 invalid_token: C12 applies to the redirect target too (the session sent it
    our token). Before, the 401 was returned and the source never told: every later call failed the same way."""
    fault_server.default("/api", Reply(status=301, headers={"Location": "/api/?q=1"}))
    fault_server.script("/api/", INVALID_TOKEN)
    fault_server.default("/api/", OK)
    source = FakeSource()
    with requests.Session() as session:
        session.auth = RequestsTokenAuth(source)
        resp = session.get(fault_server.url("/api?q=1"), timeout=10)
        assert resp.status_code == 200
        assert _auth_headers(fault_server, "/api/") == ["Bearer at-1", "Bearer at-2"]
        assert [r.query for r in fault_server.recorded("/api/")] == ["q=1", "q=1"]
        assert [s.access_token for s in source.stales] == ["at-1"] and source.renewals == 1
        assert session.get(fault_server.url("/api"), timeout=10).status_code == 200
    assert _auth_headers(fault_server) == ["Bearer at-1", "Bearer at-2"]
    assert source.renewals == 1


def test_requests_401_after_a_redirect_to_another_host_is_not_renewed(fault_server: FaultServer) -> None:
    """requests strips ``Authorization`` when redirecting to another host: the 401 there is not about our token,
    so no renewal and no retry (a retry would hand the other host a token)."""
    with FaultServer(host="localhost") as other:
        other.script("/x", INVALID_TOKEN)
        other.default("/x", OK)
        fault_server.default("/api", Reply(status=302, headers={"Location": other.url("/x")}))
        source = FakeSource()
        with requests.Session() as session:
            session.auth = RequestsTokenAuth(source)
            resp = session.get(fault_server.url("/api"), timeout=10)
        assert resp.status_code == 401
        assert _auth_headers(other, "/x") == [""]
    assert source.renewals == 0 and source.stales == []


def test_requests_one_renewal_per_call_when_the_retry_redirects_into_another_401(fault_server: FaultServer) -> None:
    """401 -> retry -> 302 -> 401 invalid_token: the call had its one renewal; the second 401 is returned."""
    fault_server.script("/api", INVALID_TOKEN, Reply(status=302, headers={"Location": "/final"}))
    fault_server.default("/final", INVALID_TOKEN)
    source = FakeSource()
    resp = requests.get(fault_server.url("/api"), auth=RequestsTokenAuth(source), timeout=10)
    assert resp.status_code == 401
    assert _auth_headers(fault_server, "/final") == ["Bearer at-2"]
    assert source.renewals == 1
