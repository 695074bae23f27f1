"""C12 retry and cookies, as a user meets them: the ``401`` that rejects the token sets a cookie (a session or
load-balancer cookie), and the client already had cookies for the site. The retry carries both, as a browser and
httpx's own ``DigestAuth`` would send them; before, requests dropped the new cookie whenever the request already
had a ``Cookie`` header, and httpx dropped it always."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
import requests

from fault_server import FaultServer, Reply
from tokensmith.integrations.httpx_auth import TokenAuth as HttpxTokenAuth
from tokensmith.integrations.requests_auth import TokenAuth as RequestsTokenAuth
from tokensmith.token import Token

REJECT_AND_SET = Reply(
    status=401,
    headers={"WWW-Authenticate": 'Bearer error="invalid_token"', "Set-Cookie": "sid=new; Path=/"},
)
OK = Reply(json={"ok": True})


class FakeSource:
    """``TokenSource`` double: "at-1", then "at-2" after the first stale report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = Token(access_token="at-1", expires_at=time.time() + 3600)
        self.renewals = 0

    def get_token(self, *, stale: Token | None = None) -> Token:
        with self._lock:
            if stale is not None and stale.access_token == self.current.access_token:
                self.renewals += 1
                self.current = Token(access_token=f"at-{self.renewals + 1}", expires_at=time.time() + 3600)
            return self.current


def _cookies(header: str | None) -> set[str]:
    return {c.strip() for c in (header or "").split(";") if c.strip()}


def _send(kind: str, url: str, source: FakeSource, cookies: dict[str, str]) -> int:
    if kind == "requests":
        with requests.Session() as session:
            session.cookies.update(cookies)
            session.auth = RequestsTokenAuth(source)
            return session.get(url, timeout=10).status_code
    if kind == "httpx":
        with httpx.Client(auth=HttpxTokenAuth(source), cookies=cookies, timeout=10) as client:
            return client.get(url).status_code

    async def go() -> int:
        async with httpx.AsyncClient(auth=HttpxTokenAuth(source), cookies=cookies, timeout=10) as client:
            return (await client.get(url)).status_code

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["requests", "httpx", "httpx-async"])
@pytest.mark.parametrize("cookies", [{}, {"a": "1"}, {"a": "1", "sid": "old"}], ids=["none", "other", "replaced"])
def test_cookies_set_by_the_401_go_with_the_retry(
    fault_server: FaultServer, kind: str, cookies: dict[str, str]
) -> None:
    fault_server.script("/api", REJECT_AND_SET, OK)
    source = FakeSource()
    assert _send(kind, fault_server.url("/api?q=1"), source, cookies) == 200
    first, retry = fault_server.recorded("/api")
    assert _cookies(first.headers.get("cookie")) == {f"{k}={v}" for k, v in cookies.items()}
    expected = {f"{k}={v}" for k, v in {**cookies, "sid": "new"}.items()}
    assert _cookies(retry.headers.get("cookie")) == expected
    assert (retry.method, retry.query, retry.headers["authorization"]) == ("GET", "q=1", "Bearer at-2")
    assert source.renewals == 1


@pytest.mark.parametrize("kind", ["requests", "httpx"])
def test_a_cookie_header_set_by_hand_is_kept_on_the_retry(fault_server: FaultServer, kind: str) -> None:
    fault_server.script("/api", REJECT_AND_SET, OK)
    source = FakeSource()
    url = fault_server.url("/api")
    if kind == "requests":
        status = requests.get(url, headers={"Cookie": "hand=1"}, auth=RequestsTokenAuth(source), timeout=10)
    else:
        with httpx.Client(auth=HttpxTokenAuth(source), timeout=10) as client:
            status = client.get(url, headers={"Cookie": "hand=1"})
    assert status.status_code == 200
    first, retry = fault_server.recorded("/api")
    assert _cookies(first.headers.get("cookie")) == {"hand=1"}
    assert _cookies(retry.headers.get("cookie")) == {"hand=1", "sid=new"}
