"""TokenClient against the fault server: discovery rules (C28), retries that never replay a refresh the server
may have seen (C26, C32), keeping refresh tokens (C9), compare-and-delete on invalid_grant, leeway."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
import requests

from fault_server import FaultServer, Reply
from tokensmith import exceptions as exc
from tokensmith._protocol.client_auth import ClientSecretBasic, NoClientAuth
from tokensmith._retry import RetryPolicy
from tokensmith.client import TokenClient
from tokensmith.stores.memory import MemoryStore
from tokensmith.token import Token


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _token(n: int = 1, lifetime: float = 3600, rt: str | None = "rt-1") -> dict[str, object]:
    body: dict[str, object] = {"access_token": f"at-{n}", "token_type": "Bearer", "expires_in": lifetime}
    if rt:
        body["refresh_token"] = rt
    return body


def _client(server: FaultServer, clock: Clock, **kwargs: object) -> TokenClient:
    kwargs.setdefault("auth", ClientSecretBasic("svc", "svc-secret"))
    return TokenClient(
        server.url("/token"),
        clock=clock,
        sleep=clock.sleep,  # type: ignore[arg-type]
        session=requests.Session(),
        **kwargs,
    )


def test_rfc8414_path_insertion_and_oidc_fallback(fault_server: FaultServer) -> None:
    """C28: OIDC appends, RFC 8414 inserts; a 404 on the first falls through to the second."""
    issuer = fault_server.url("/tenants/acme")
    fault_server.script("/tenants/acme/.well-known/openid-configuration", Reply(status=404, json={"error": "x"}))
    fault_server.script(
        "/.well-known/oauth-authorization-server/tenants/acme",
        Reply(
            json={
                "issuer": issuer,
                "token_endpoint": fault_server.url("/token"),
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            }
        ),
    )
    fault_server.default("/token", Reply(json=_token(rt=None)))
    client = TokenClient.from_issuer(issuer, "svc", "svc-secret", session=requests.Session())
    assert client.get_token().access_token == "at-1"
    assert [r.path for r in fault_server.recorded()] == [
        "/tenants/acme/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenants/acme",
        "/token",
    ]
    # The server only lists client_secret_post, so the secret goes in the body and no Basic header is sent (C2).
    token_request = fault_server.recorded("/token")[0]
    assert dict(token_request.form)["client_secret"] == "svc-secret" and "authorization" not in token_request.headers


def test_wrong_issuer_in_metadata_is_refused(fault_server: FaultServer) -> None:
    """RFC 8414 §3.3: if the issuer differs, the document MUST NOT be used (mix-up defence, C23)."""
    issuer = fault_server.url("/real")
    fault_server.default(
        "/real/.well-known/openid-configuration",
        Reply(json={"issuer": "https://evil.example", "token_endpoint": "https://evil.example/t"}),
    )
    client = TokenClient.from_issuer(issuer, "svc", "s", session=requests.Session())
    with pytest.raises(exc.DiscoveryError, match="not the issuer"):
        client.get_token()
    assert fault_server.count("/token") == 0


def test_metadata_is_cached(fault_server: FaultServer) -> None:
    issuer = fault_server.url("/c")
    fault_server.default(
        "/c/.well-known/openid-configuration",
        Reply(json={"issuer": issuer, "token_endpoint": fault_server.url("/token")}),
    )
    fault_server.default("/token", Reply(json=_token(rt=None)))
    session = requests.Session()
    for _ in range(3):
        TokenClient.from_issuer(issuer, "svc", "s", session=session).fetch_client_credentials()
    assert fault_server.count("/c/.well-known/openid-configuration") == 1
    # Issue 7 item 15: a client with other trust settings (verify, session) never reuses that document.
    TokenClient.from_issuer(issuer, "svc", "s", session=session, verify=False).fetch_client_credentials()
    TokenClient.from_issuer(issuer, "svc", "s", session=requests.Session()).fetch_client_credentials()
    assert fault_server.count("/c/.well-known/openid-configuration") == 3


def test_client_credentials_retry_after_is_honoured_and_bounded(fault_server: FaultServer) -> None:
    clock = Clock()
    fault_server.script("/token", Reply(status=503, body="busy", headers={"Retry-After": "7"}), Reply(json=_token()))
    assert _client(fault_server, clock).get_token().access_token == "at-1"
    assert clock.slept == [7.0] and fault_server.count("/token") == 2
    fault_server.script("/token", Reply(status=429, json={"error": "slow"}, headers={"Retry-After": "3600"}))
    with pytest.raises(exc.OAuthError) as info:
        _client(fault_server, Clock()).fetch_client_credentials()
    assert info.value.retry_after == 3600.0 and info.value.transient  # too long to wait: handed to the caller


def test_client_credentials_retried_after_a_dropped_connection(fault_server: FaultServer) -> None:
    clock = Clock()
    fault_server.script(
        "/token", Reply(drop=True), Reply(status=502, body="<html/>", content_type="text/html"), Reply(json=_token())
    )
    assert _client(fault_server, clock).get_token().access_token == "at-1"
    assert fault_server.count("/token") == 3 and clock.slept == [0.5, 1.0]


def test_refresh_is_not_replayed_when_the_server_may_have_seen_it(fault_server: FaultServer) -> None:
    """A dropped connection after sending: the server may have rotated the refresh token already. Do not send
    the old one again; keep everything and report a transient error (C26)."""
    clock = Clock()
    client = _client(fault_server, clock, auth=NoClientAuth("pub"), grant="device_code")
    client.store.save(
        client.cache_key, Token("at-old", expires_at=clock.now - 1, issued_at=clock.now - 3601, refresh_token="rt-old")
    )
    fault_server.script("/token", Reply(drop=True))
    with pytest.raises(exc.ConnectError):
        client.get_token()
    assert fault_server.count("/token") == 1 and clock.slept == []
    stored = client.store.load(client.cache_key)
    assert stored is not None and stored.refresh_token == "rt-old"  # nothing lost


def test_refresh_retried_when_the_server_said_it_did_not_process_it(fault_server: FaultServer) -> None:
    clock = Clock()
    client = _client(fault_server, clock, auth=NoClientAuth("pub"), grant="device_code")
    client.store.save(client.cache_key, Token("at-old", expires_at=clock.now - 1, refresh_token="rt-old"))
    fault_server.script(
        "/token",
        Reply(status=503, json={"error": "temporarily_unavailable"}, headers={"Retry-After": "2"}),
        Reply(json=_token(2, rt="rt-new")),
    )
    assert client.get_token().access_token == "at-2"
    assert fault_server.count("/token") == 2 and clock.slept == [2.0]


def test_refresh_retried_when_the_connection_was_never_made() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = Clock()
    client = TokenClient(
        f"http://127.0.0.1:{port}/token",
        auth=NoClientAuth("pub"),
        grant="device_code",
        clock=clock,
        sleep=clock.sleep,
        retry=RetryPolicy(attempts=3),
        session=requests.Session(),
    )
    client.store.save(client.cache_key, Token("at-old", expires_at=clock.now - 1, refresh_token="rt-old"))
    with pytest.raises(exc.ConnectError) as info:
        client.get_token()
    assert info.value.request_sent is False and clock.slept == [0.5, 1.0]  # three attempts


def test_transient_refresh_failure_returns_the_still_valid_token(fault_server: FaultServer) -> None:
    clock = Clock()
    client = _client(fault_server, clock, auth=NoClientAuth("pub"), grant="device_code")
    # 10 s left of a 3600 s token: inside the 60 s leeway, so a refresh is attempted.
    client.store.save(
        client.cache_key, Token("at-old", expires_at=clock.now + 10, issued_at=clock.now - 3590, refresh_token="rt-old")
    )
    fault_server.script("/token", Reply(status=500, body="oops"))
    assert client.get_token().access_token == "at-old"


def test_refresh_keeps_the_old_refresh_token_when_none_is_returned(fault_server: FaultServer) -> None:
    """RFC 6749 §6 (C9): no new refresh token means keep the old one."""
    clock = Clock()
    client = _client(fault_server, clock, auth=NoClientAuth("pub"), grant="device_code")
    client.store.save(client.cache_key, Token("at-old", expires_at=clock.now - 1, refresh_token="rt-keep"))
    fault_server.script("/token", Reply(json=_token(2, rt=None)))
    assert client.get_token().refresh_token == "rt-keep"
    stored = client.store.load(client.cache_key)
    assert stored is not None and stored.refresh_token == "rt-keep" and stored.access_token == "at-2"
    assert dict(fault_server.recorded("/token")[0].form) == {
        "grant_type": "refresh_token",
        "client_id": "pub",
        "refresh_token": "rt-keep",
    }


class RacingStore(MemoryStore):
    """A store without real locking, where a sibling rotates the token between the client's read under the
    lock and its delete."""

    locked = False

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:  # type: ignore[override]
        self.locked = True
        yield

    def load(self, key: str) -> Token | None:
        token = super().load(key)
        if token is not None and token.refresh_token == "rt-spent" and self.locked:
            super().save(key, Token("at-sibling", refresh_token="rt-sibling"))
        return token


def test_invalid_grant_deletes_only_the_token_it_used(fault_server: FaultServer) -> None:
    clock = Clock()
    store = RacingStore()
    client = _client(fault_server, clock, auth=NoClientAuth("pub"), grant="device_code", store=store)
    store.save(client.cache_key, Token("at-old", expires_at=clock.now - 1, refresh_token="rt-spent"))
    fault_server.script("/token", Reply(status=400, json={"error": "invalid_grant"}))
    with pytest.raises(exc.LoginRequired):
        client.get_token()
    kept = MemoryStore.load(store, client.cache_key)
    assert kept is not None and kept.refresh_token == "rt-sibling"  # the sibling's token survived
    assert client.stats.invalid_grants == 1


def test_invalid_grant_with_client_credentials_fetches_anew(fault_server: FaultServer) -> None:
    clock = Clock()
    client = _client(fault_server, clock)
    client.store.save(client.cache_key, Token("at-old", expires_at=clock.now - 1, refresh_token="rt-dead"))
    fault_server.script("/token", Reply(status=400, json={"error": "invalid_grant"}), Reply(json=_token(3, rt=None)))
    assert client.get_token().access_token == "at-3"
    assert [dict(r.form)["grant_type"] for r in fault_server.recorded("/token")] == [
        "refresh_token",
        "client_credentials",
    ]


@pytest.mark.parametrize(
    ("lifetime", "fresh_until", "must_by"), [(60, 45, 54), (3600, 3300, 3540), (5, 3.75, 4.5), (86400, 43200, 86340)]
)
def test_leeway_adapts_to_the_lifetime(lifetime: float, fresh_until: float, must_by: float) -> None:
    """A fresh 60 s token is not treated as expired (unlike a fixed 60 s leeway). Issue 10: the old leeway (a
    tenth of the lifetime, at most 60 s) is now the mandatory window; background renewal starts earlier, at a
    quarter of the lifetime (at most 300 s) before expiry, or at half the lifetime for tokens of 2 h or more."""
    token = Token("at", expires_at=1000 + lifetime, issued_at=1000)
    assert token.is_fresh(1000) and token.is_fresh(1000 + fresh_until - 0.01)
    assert not token.is_fresh(1000 + fresh_until)
    assert token.must_refresh_at == 1000 + must_by


def test_cached_token_is_reused_until_its_refresh_time(fault_server: FaultServer) -> None:
    clock = Clock()
    fault_server.default("/token", Reply(json=_token(rt=None, lifetime=100)))
    client = _client(fault_server, clock)
    for _ in range(1000):
        client.get_token()
        clock.now += 0.065  # 1000 calls over 65 s of a 100 s token (renewed from 67.5-75 s: 75 s minus jitter)
    assert fault_server.count("/token") == 1 and client.stats.token_requests == 1


def test_stale_token_from_a_401_is_renewed_once(fault_server: FaultServer) -> None:
    clock = Clock()
    fault_server.script("/token", Reply(json=_token(1, rt=None)), Reply(json=_token(2, rt=None)))
    client = _client(fault_server, clock)
    first = client.get_token()
    second = client.get_token(stale=first)
    assert second.access_token == "at-2"
    assert client.get_token(stale=first).access_token == "at-2"  # already renewed: no second request
    assert fault_server.count("/token") == 2


def test_login_required_when_interactive_is_not_allowed(fault_server: FaultServer) -> None:
    client = _client(fault_server, Clock(), auth=NoClientAuth("pub"))
    assert client.grant == "device_code"
    with pytest.raises(exc.LoginRequired):
        client.get_token()
    assert fault_server.count() == 0


def test_no_secret_in_repr() -> None:
    client = TokenClient("https://idp.example/token", "svc", "svc-very-secret")
    token = Token("at-very-secret", refresh_token="rt-very-secret", id_token="id-very-secret")
    text = repr(client) + repr(client.auth) + repr(token) + str(token)
    assert "very-secret" not in text
