"""The requests and httpx auth handlers against a real HTTP server (the fault server as the RESOURCE server).

The token source is a small fake of the ``TokenSource`` protocol (the contract under test is the handler's use of
it): it hands out "at-1", "at-2", ... and counts renewals. C11 (Bearer header), C12 (renew once and retry once on
``invalid_token`` only), C25 (never in the URL).
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import requests

from fault_server import FaultServer, Reply
from tokensmith.exceptions import DPoPError, InvalidGrant
from tokensmith.integrations import TOKEN68, bearer_error, is_invalid_token, parse_www_authenticate
from tokensmith.integrations.httpx_auth import TokenAuth as HttpxTokenAuth
from tokensmith.integrations.requests_auth import TokenAuth as RequestsTokenAuth
from tokensmith.token import Token

INVALID_TOKEN = Reply(
    status=401,
    headers={"WWW-Authenticate": 'Bearer realm="api", error="invalid_token", error_description="expired"'},
    json={"error": "invalid_token"},
)
OK = Reply(json={"ok": True})


class FakeSource:
    """``TokenSource`` double: "at-1", "at-2", ...; renews on ``stale`` only if it is the current token."""

    def __init__(self, *, barrier: threading.Barrier | None = None, fail_renewal: bool = False) -> None:
        self._lock = threading.Lock()
        self._n = 1
        self.current = Token(access_token="at-1", expires_at=time.time() + 3600)
        self.renewals = 0
        self.stales: list[Token | None] = []  # the ``stale`` argument of every call
        self.threads: list[int] = []  # thread ident of every call
        self._barrier = barrier  # makes stale calls wait for each other (concurrency test)
        self._fail_renewal = fail_renewal

    def get_token(self, *, stale: Token | None = None) -> Token:
        if stale is not None and self._barrier is not None:
            self._barrier.wait(timeout=30)
        with self._lock:
            self.stales.append(stale)
            self.threads.append(threading.get_ident())
            if stale is not None and stale.access_token == self.current.access_token:
                if self._fail_renewal:
                    raise InvalidGrant("invalid_grant", "refresh token revoked", status_code=400)
                self._n += 1
                self.renewals += 1
                self.current = Token(access_token=f"at-{self._n}", expires_at=time.time() + 3600)
            return self.current


class PeekingSource(FakeSource):
    """Also offers the optional non-blocking ``peek()``."""

    def __init__(self) -> None:
        super().__init__()
        self.peeks = 0

    def peek(self) -> Token | None:
        self.peeks += 1
        token = self.current
        return token if token.is_fresh(time.time()) else None


def _auth_headers(server: FaultServer, path: str = "/api") -> list[str]:
    return [r.headers.get("authorization", "") for r in server.recorded(path)]


# --- parse_www_authenticate (C12) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer", [("bearer", {})]),
        ('Bearer realm="example"', [("bearer", {"realm": "example"})]),
        (
            'Basic realm="x", Bearer error="invalid_token"',
            [("basic", {"realm": "x"}), ("bearer", {"error": "invalid_token"})],
        ),
        # commas, "=" and escaped quotes inside quoted-strings are data
        (
            'Bearer realm="a, b=c", error="invalid_token", error_description="say \\"hi\\", then go"',
            [("bearer", {"realm": "a, b=c", "error": "invalid_token", "error_description": 'say "hi", then go'})],
        ),
        # scheme and parameter names are case-insensitive (lower-cased); BWS around "="; unquoted token values
        ('bEaReR ERROR = "invalid_token" , Realm=api', [("bearer", {"error": "invalid_token", "realm": "api"})]),
        # token68 challenges, with and without padding, next to a parameterised one
        (
            "Negotiate YIIC+/9==, Basic dXNlcjpwYXNz, Bearer error=invalid_token",
            [
                ("negotiate", {TOKEN68: "YIIC+/9=="}),
                ("basic", {TOKEN68: "dXNlcjpwYXNz"}),
                ("bearer", {"error": "invalid_token"}),
            ],
        ),
        # RFC 9110 §11.6.1's own example
        (
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}), ("basic", {"realm": "simple"})],
        ),
        # empty list elements, a scheme with no params followed by another challenge
        (', , Basic , Bearer ,error="x"', [("basic", {}), ("bearer", {"error": "x"})]),
        # lenient: junk is skipped, unterminated quotes end at the end, repeated params keep the first
        ('"junk", @@, Bearer error="invalid_token"', [("bearer", {"error": "invalid_token"})]),
        ('Bearer error="unterminated', [("bearer", {"error": "unterminated"})]),
        ('Bearer error="a", error="b"', [("bearer", {"error": "a"})]),
        ('Bearer realm="x" junk, error="y"', [("bearer", {"realm": "x", "error": "y"})]),
        ("", []),
        ("   ", []),
    ],
)
def test_parse_www_authenticate(value: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert parse_www_authenticate(value) == expected


def test_bearer_error_and_is_invalid_token() -> None:
    """C12: only a 401 with a Bearer challenge carrying error="invalid_token" triggers a renewal."""
    multi = 'Basic realm="x", Bearer error="invalid_token"'
    assert bearer_error(multi) == "invalid_token"
    assert bearer_error('Basic error="invalid_token"') is None  # not the Bearer challenge
    assert bearer_error('Bearer realm="x"') is None
    assert bearer_error(None) is None
    assert is_invalid_token(401, multi)
    assert not is_invalid_token(403, multi)
    assert not is_invalid_token(401, 'Bearer error="insufficient_scope"')
    assert not is_invalid_token(401, 'Bearer error="invalid_request"')
    assert not is_invalid_token(401, "Bearer")
    assert not is_invalid_token(401, None)
    assert not is_invalid_token(401, 'Bearer error="invalid_token_x"')


def test_import_is_light() -> None:
    """``tokensmith.integrations`` imports neither requests nor httpx (DESIGN: import light)."""
    code = "import sys, tokensmith.integrations; print(sorted({'requests', 'httpx'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the three clients, driven through one small adapter ---------------------------------------------------


Send = Callable[..., Any]  # send(method, url, auth, **body_kwargs) -> response with .status_code, .history


def _send_requests(method: str, url: str, source: FakeSource, **kw: Any) -> Any:
    return requests.request(method, url, auth=RequestsTokenAuth(source), timeout=10, **kw)


def _send_httpx(method: str, url: str, source: FakeSource, **kw: Any) -> Any:
    with httpx.Client(auth=HttpxTokenAuth(source), timeout=10) as client:
        return client.request(method, url, **kw)


def _send_httpx_async(method: str, url: str, source: FakeSource, **kw: Any) -> Any:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(auth=HttpxTokenAuth(source), timeout=10) as client:
            return await client.request(method, url, **kw)

    return asyncio.run(go())


CLIENTS = pytest.mark.parametrize(
    "send", [_send_requests, _send_httpx, _send_httpx_async], ids=["requests", "httpx", "httpx-async"]
)


@CLIENTS
def test_bearer_header_sent_never_in_url(fault_server: FaultServer, send: Send) -> None:
    """C11: ``Authorization: Bearer at-1``; C25: the token is not in the query string."""
    fault_server.default("/api", OK)
    source = FakeSource()
    resp = send("GET", fault_server.url("/api?x=1"), source)
    assert resp.status_code == 200
    (rec,) = fault_server.recorded("/api")
    assert rec.headers["authorization"] == "Bearer at-1"
    assert rec.query == "x=1" and "at-1" not in rec.query
    assert source.stales == [None] and source.renewals == 0


@CLIENTS
@pytest.mark.parametrize(
    "body",
    [
        {"data": {"a": "1", "b": "two words"}},
        {"json": {"k": [1, 2, 3]}},
        {"content": b"raw-bytes"},
    ],
    ids=["form", "json", "bytes"],
)
def test_invalid_token_renews_once_and_replays_post(
    fault_server: FaultServer, send: Send, body: dict[str, Any]
) -> None:
    """C12: 401 invalid_token → exactly one stale renewal, one retry with the new token and the same body."""
    if send is _send_requests and "content" in body:
        body = {"data": body["content"]}
    fault_server.script("/api", INVALID_TOKEN, OK)
    source = FakeSource()
    sent = source.current
    resp = send("POST", fault_server.url("/api"), source, **body)
    assert resp.status_code == 200
    assert [r.status_code for r in resp.history] == [401]
    first, second = fault_server.recorded("/api")
    assert (first.headers["authorization"], second.headers["authorization"]) == ("Bearer at-1", "Bearer at-2")
    assert second.method == "POST" and second.body == first.body and first.body
    assert source.renewals == 1
    assert len(source.stales) == 2 and source.stales[0] is None and source.stales[1] is sent


@CLIENTS
def test_streamed_generator_body(fault_server: FaultServer, send: Send) -> None:
    """A generator body. requests cannot replay it: the 401 is returned, not re-sent (the source is still told
    the token is stale, so the next request works). httpx buffers request bodies for auth
    (``requires_request_body``), so it can replay."""
    fault_server.script("/api", INVALID_TOKEN, OK)
    source = FakeSource()
    if send is _send_httpx_async:

        async def agen() -> AsyncIterator[bytes]:
            for chunk in (b"part-1;", b"part-2"):
                yield chunk

        kw: dict[str, Any] = {"content": agen()}
    else:

        def gen() -> Iterator[bytes]:
            yield from (b"part-1;", b"part-2")

        kw = {"data": gen()} if send is _send_requests else {"content": gen()}
    resp = send("POST", fault_server.url("/api"), source, **kw)
    recs = fault_server.recorded("/api")
    assert recs[0].body == b"part-1;part-2"
    assert source.renewals == 1
    if send is _send_requests:
        assert resp.status_code == 401 and resp.history == []
        assert len(recs) == 1
    else:
        assert resp.status_code == 200
        assert len(recs) == 2 and recs[1].body == b"part-1;part-2"
        assert recs[1].headers["authorization"] == "Bearer at-2"


def test_requests_file_body_is_rewound_and_replayed(fault_server: FaultServer) -> None:
    """A seekable file body: requests recorded its position, the handler rewinds it for the retry."""
    fault_server.script("/api", INVALID_TOKEN, OK)
    source = FakeSource()
    body = io.BytesIO(b"0123456789" * 100)
    body.seek(10)  # requests replays from where the body started, not from 0
    resp = requests.post(fault_server.url("/api"), data=body, auth=RequestsTokenAuth(source), timeout=10)
    assert resp.status_code == 200
    first, second = fault_server.recorded("/api")
    assert first.body == second.body == (b"0123456789" * 100)[10:]


@CLIENTS
def test_second_401_is_returned_no_loop(fault_server: FaultServer, send: Send) -> None:
    """C12: refresh once, retry once. A rejected retry goes back to the caller."""
    fault_server.default("/api", INVALID_TOKEN)
    source = FakeSource()
    resp = send("GET", fault_server.url("/api"), source)
    assert resp.status_code == 401
    assert [r.status_code for r in resp.history] == [401]
    assert _auth_headers(fault_server) == ["Bearer at-1", "Bearer at-2"]
    assert source.renewals == 1


@CLIENTS
@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=401, headers={"WWW-Authenticate": 'Bearer realm="api"'}),  # no error: credentials missing
        Reply(status=401),  # no challenge at all
        Reply(status=401, headers={"WWW-Authenticate": 'Basic realm="x", Bearer realm="y"'}),
        Reply(status=401, headers={"WWW-Authenticate": 'Basic error="invalid_token"'}),  # not a Bearer challenge
        Reply(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_request"'}),
        Reply(status=400, headers={"WWW-Authenticate": 'Bearer error="invalid_request"'}),
        Reply(status=403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="write"'}),
        Reply(status=403, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}),  # wrong status for it
    ],
    ids=[
        "401-no-error",
        "401-bare",
        "401-no-bearer-error",
        "401-basic-error",
        "401-invalid-request",
        "400-invalid-request",
        "403-insufficient-scope",
        "403-invalid-token",
    ],
)
def test_other_rejections_are_returned_untouched(fault_server: FaultServer, send: Send, reply: Reply) -> None:
    """C12: no renewal and no retry unless it is a 401 with Bearer error="invalid_token"."""
    fault_server.script("/api", reply)
    fault_server.default("/api", OK)  # a retry would succeed: make sure none happens
    source = FakeSource()
    resp = send("GET", fault_server.url("/api"), source)
    assert resp.status_code == reply.status
    assert resp.history == []
    assert fault_server.count("/api") == 1
    assert source.renewals == 0 and source.stales == [None]
    if reply.status == 403:
        assert bearer_error(resp.headers["WWW-Authenticate"]) in ("insufficient_scope", "invalid_token")


@CLIENTS
def test_several_challenges_in_one_header(fault_server: FaultServer, send: Send) -> None:
    """C12: the Bearer challenge is found after a Basic one, with commas inside its quoted values."""
    header = 'Basic realm="x, y", Bearer realm="api, v2", error="invalid_token", error_description="a, b"'
    fault_server.script("/api", Reply(status=401, headers={"WWW-Authenticate": header}), OK)
    source = FakeSource()
    resp = send("GET", fault_server.url("/api"), source)
    assert resp.status_code == 200
    assert _auth_headers(fault_server) == ["Bearer at-1", "Bearer at-2"]
    assert source.renewals == 1


@CLIENTS
def test_renewal_errors_propagate(fault_server: FaultServer, send: Send) -> None:
    """A dead refresh token (``InvalidGrant``) reaches the caller as the typed error, no retry is sent."""
    fault_server.script("/api", INVALID_TOKEN)
    fault_server.default("/api", OK)
    source = FakeSource(fail_renewal=True)
    with pytest.raises(InvalidGrant):
        send("GET", fault_server.url("/api"), source)
    assert fault_server.count("/api") == 1


def test_requests_session_reuse_and_redirect_after_retry(fault_server: FaultServer) -> None:
    """With a Session: cookies set by the 401 go with the retry; a redirect of the retried response is followed
    by the session; the next request uses the renewed token without another renewal."""
    fault_server.script(
        "/api",
        Reply(status=401, headers={**INVALID_TOKEN.headers, "Set-Cookie": "sid=abc; Path=/"}),
        Reply(status=302, headers={"Location": "/final"}),
        OK,
    )
    fault_server.default("/final", OK)
    source = FakeSource()
    with requests.Session() as session:
        session.auth = RequestsTokenAuth(source)
        resp = session.get(fault_server.url("/api"), timeout=10)
        assert resp.status_code == 200 and resp.url.endswith("/final")
        # requests' redirect handling rebuilds ``history`` from the response it got (the retried 302), as it does
        # for its own digest auth: the 401 is on the wire (below), not in the final history.
        assert [r.status_code for r in resp.history] == [302]
        resp2 = session.get(fault_server.url("/api"), timeout=10)
        assert resp2.status_code == 200 and resp2.history == []
    first, retry, third = fault_server.recorded("/api")
    assert first.headers["authorization"] == "Bearer at-1" and "cookie" not in first.headers
    assert retry.headers.get("cookie") == "sid=abc"
    assert third.headers["authorization"] == "Bearer at-2"
    assert source.renewals == 1


# --- concurrency: the handler passes the exact token it sent as ``stale`` ------------------------------------


N_THREADS = 10


@pytest.mark.parametrize("kind", ["requests", "httpx"])
def test_concurrent_401s_pass_the_sent_token_as_stale(fault_server: FaultServer, kind: str) -> None:
    """10 threads send with at-1 and all get 401 invalid_token. Each handler reports *the token it sent* as
    ``stale``; the (fake) source renews once, and every retry carries at-2. The barrier holds the stale calls
    until all 10 rejections are in, so every retry reaches the server after every first request."""
    fault_server.script("/api", *([INVALID_TOKEN] * N_THREADS))
    fault_server.default("/api", OK)
    source = FakeSource(barrier=threading.Barrier(N_THREADS))
    url = fault_server.url("/api")
    if kind == "requests":
        auth_r = RequestsTokenAuth(source)  # one handler shared by all threads

        def one(_: int) -> int:
            return requests.get(url, auth=auth_r, timeout=10).status_code

        statuses = list(ThreadPoolExecutor(N_THREADS).map(one, range(N_THREADS)))
    else:
        with httpx.Client(auth=HttpxTokenAuth(source), timeout=10) as client:
            statuses = list(ThreadPoolExecutor(N_THREADS).map(lambda _: client.get(url).status_code, range(N_THREADS)))
    assert statuses == [200] * N_THREADS
    assert source.renewals == 1
    stales = [s for s in source.stales if s is not None]
    assert len(stales) == N_THREADS
    assert {s.access_token for s in stales} == {"at-1"}
    headers = _auth_headers(fault_server)
    assert headers[:N_THREADS] == ["Bearer at-1"] * N_THREADS
    assert headers[N_THREADS:] == ["Bearer at-2"] * N_THREADS


def test_httpx_async_concurrent_401s(fault_server: FaultServer) -> None:
    """The async variant of the above: 10 tasks on one loop; the stale renewals run in worker threads (they
    block on the barrier together, which would deadlock if they ran on the event loop)."""
    fault_server.script("/api", *([INVALID_TOKEN] * N_THREADS))
    fault_server.default("/api", OK)
    source = FakeSource(barrier=threading.Barrier(N_THREADS))
    url = fault_server.url("/api")

    async def go() -> list[int]:
        limits = httpx.Limits(max_connections=N_THREADS)
        async with httpx.AsyncClient(auth=HttpxTokenAuth(source), timeout=10, limits=limits) as client:
            responses = await asyncio.gather(*(client.get(url) for _ in range(N_THREADS)))
        return [r.status_code for r in responses]

    assert asyncio.run(go()) == [200] * N_THREADS
    assert source.renewals == 1
    assert {s.access_token for s in source.stales if s is not None} == {"at-1"}
    assert _auth_headers(fault_server)[N_THREADS:] == ["Bearer at-2"] * N_THREADS


# --- async: never block the event loop on the source -------------------------------------------------------


def test_httpx_async_calls_source_off_the_loop(fault_server: FaultServer) -> None:
    """Without ``peek()``, every ``get_token`` call (fast path and renewal) runs in a worker thread."""
    fault_server.script("/api", INVALID_TOKEN, OK)
    source = FakeSource()
    loop_thread: list[int] = []

    async def go() -> int:
        loop_thread.append(threading.get_ident())
        async with httpx.AsyncClient(auth=HttpxTokenAuth(source), timeout=10) as client:
            return (await client.get(fault_server.url("/api"))).status_code

    assert asyncio.run(go()) == 200
    assert len(source.threads) == 2 and loop_thread[0] not in source.threads


def test_httpx_async_peek_fast_path(fault_server: FaultServer) -> None:
    """With ``peek()`` returning a fresh token, no thread hop and no ``get_token`` call; the stale renewal after
    a 401 still goes through ``get_token`` in a worker thread."""
    fault_server.script("/api", OK, INVALID_TOKEN, OK)
    source = PeekingSource()
    sent = source.current
    loop_thread: list[int] = []

    async def go() -> list[int]:
        loop_thread.append(threading.get_ident())
        async with httpx.AsyncClient(auth=HttpxTokenAuth(source), timeout=10) as client:
            return [(await client.get(fault_server.url("/api"))).status_code for _ in range(2)]

    assert asyncio.run(go()) == [200, 200]
    assert source.peeks == 2
    assert source.stales == [sent] and source.stales[0] is sent
    assert loop_thread[0] not in source.threads
    assert _auth_headers(fault_server) == ["Bearer at-1", "Bearer at-1", "Bearer at-2"]


def test_httpx_async_peek_none_falls_back_to_get_token(fault_server: FaultServer) -> None:
    """``peek()`` returning None (nothing fresh cached) means: renew via ``get_token`` in a worker thread."""
    fault_server.default("/api", OK)
    source = PeekingSource()
    source.current = Token(access_token="at-1", expires_at=time.time() - 1)  # expired: peek says None

    async def go() -> int:
        async with httpx.AsyncClient(auth=HttpxTokenAuth(source), timeout=10) as client:
            return (await client.get(fault_server.url("/api"))).status_code

    assert asyncio.run(go()) == 200
    assert source.peeks == 1 and source.stales == [None]


@CLIENTS
def test_a_dpop_token_from_a_source_that_cannot_make_proofs_is_a_typed_error_and_not_sent(
    fault_server: FaultServer, send: Send
) -> None:
    """RFC 9449 §7: a DPoP-bound token goes out only with a proof. A custom source that hands one out without
    ``dpop_headers`` gets a ``DPoPError`` saying so (not an ``AttributeError``), and nothing is sent."""
    fault_server.default("/api", OK)
    source = FakeSource()
    source.current = Token(access_token="at-1", token_type="DPoP", expires_at=time.time() + 3600)
    with pytest.raises(DPoPError, match="dpop_headers"):
        send("GET", fault_server.url("/api"), source)
    assert fault_server.recorded("/api") == []
