"""Issue 7 B and C at the public API, against the fault server: never lose a token (failed saves, stale
tokens, invalid_grant chained), never herd an IdP that is down, never hold the store lock across the network.

Time is injected (wall clock, monotonic clock and sleep move only when the test says), so what is asserted are
counts: requests the server saw, calls answered without the network.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

import tokensmith
from fake_clock import Clock
from fault_server import FaultServer, Reply
from token_replies import DOWN, token_body
from tokensmith import token_client


def _client(server: FaultServer, clock: Clock, **kwargs: object) -> tokensmith.TokenClient:
    kwargs.setdefault("auth", tokensmith.ClientSecretBasic("svc", "svc-secret"))
    return tokensmith.TokenClient(
        server.url("/token"),
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        session=requests.Session(),
        **kwargs,  # type: ignore[arg-type]
    )


# --- B.6: a failed save keeps the token -------------------------------------------------------------------------


class FlakyStore(tokensmith.MemoryStore):
    """A store whose disk is full while ``full`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.saves = 0

    def save(self, key: str, token: tokensmith.Token) -> None:
        if self.full:
            raise tokensmith.StoreError("cannot write token file: No space left on device")
        self.saves += 1
        super().save(key, token)


def test_a_failed_save_after_a_rotating_refresh_keeps_the_new_token(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    store = FlakyStore()
    client = _client(fault_server, clock, auth=tokensmith.NoClientAuth("pub"), grant="device_code", store=store)
    store.save(client.cache_key, tokensmith.Token("at-0", expires_at=clock.now - 1, refresh_token="rt-0"))
    fault_server.script("/token", Reply(json=token_body(1, rt="rt-1")))  # rotation: rt-0 is now spent
    store.full = True
    with caplog.at_level(logging.WARNING, logger="tokensmith"):
        token = client.get_token()
    assert token.access_token == "at-1" and token.refresh_token == "rt-1"  # returned, not lost
    assert client.stats.save_failures == 1
    assert any("keeping it in memory" in r.getMessage() for r in caplog.records)
    assert client.get_token() is token and fault_server.count("/token") == 1  # used from memory meanwhile
    # The disk frees up; the next call after the re-save interval stores it, with no new request.
    store.full = False
    clock.advance(31)
    assert client.get_token() is token
    stored = store.load(client.cache_key)
    assert stored is not None and stored.refresh_token == "rt-1" and fault_server.count("/token") == 1


def test_a_failed_save_is_retried_at_close(fault_server: FaultServer) -> None:
    clock = Clock()
    store = FlakyStore()
    client = _client(fault_server, clock, store=store)
    fault_server.script("/token", Reply(json=token_body(1)))
    store.full = True
    token = client.get_token()
    store.full = False
    client.close()
    assert store.load(client.cache_key) == token


def test_refresh_and_fetch_client_credentials_store_what_they_get(fault_server: FaultServer) -> None:
    """B.6: the public ``refresh()`` used to spend the refresh token and store nothing."""
    clock = Clock()
    client = _client(fault_server, clock, auth=tokensmith.NoClientAuth("pub"), grant="device_code")
    client.store.save(client.cache_key, tokensmith.Token("at-0", expires_at=clock.now + 50, refresh_token="rt-0"))
    fault_server.script("/token", Reply(json=token_body(1, rt="rt-1")))
    refreshed = client.refresh()
    assert client.store.load(client.cache_key) == refreshed and refreshed.refresh_token == "rt-1"
    assert dict(fault_server.recorded("/token")[0].form)["refresh_token"] == "rt-0"

    cc = _client(fault_server, clock)
    fault_server.script("/token", Reply(json=token_body(2)))
    fetched = cc.fetch_client_credentials()
    assert cc.store.load(cc.cache_key) == fetched and cc.get_token() is fetched
    assert fault_server.count("/token") == 2


# --- B.7: transient failures and stale tokens --------------------------------------------------------------------


def test_client_credentials_serve_the_valid_token_through_a_transient_failure(fault_server: FaultServer) -> None:
    clock = Clock()
    client = _client(fault_server, clock, retry=tokensmith.RetryPolicy(attempts=1))
    fault_server.script("/token", Reply(json=token_body(1, lifetime=100)))
    fault_server.default("/token", DOWN)
    first = client.get_token()
    clock.advance(95)  # past its renewal point (90 s), still valid for 5 s
    assert client.get_token() is first  # the 503 is absorbed: the token still works
    assert client.stats.served_stale == 1 and fault_server.count("/token") == 2
    clock.advance(10)  # now expired: the transient error reaches the caller (after the back-off step)
    with pytest.raises(tokensmith.TemporarilyUnavailable):
        client.get_token()
    assert fault_server.count("/token") == 3


def test_get_token_with_stale_never_returns_the_stale_token(fault_server: FaultServer) -> None:
    clock = Clock()
    client = _client(fault_server, clock, retry=tokensmith.RetryPolicy(attempts=1))
    fault_server.script("/token", Reply(json=token_body(1, lifetime=3600)), DOWN)
    rejected = client.get_token()
    with pytest.raises(tokensmith.TemporarilyUnavailable):  # not `rejected`, although it has not expired
        client.get_token(stale=rejected)
    with pytest.raises(tokensmith.TemporarilyUnavailable):  # nor from the remembered failure
        client.get_token(stale=rejected)
    assert fault_server.count("/token") == 2


def test_login_required_after_invalid_grant_chains_it(fault_server: FaultServer) -> None:
    clock = Clock()
    client = _client(fault_server, clock, auth=tokensmith.NoClientAuth("pub"), grant="device_code")
    client.store.save(client.cache_key, tokensmith.Token("at-0", expires_at=clock.now - 1, refresh_token="rt-0"))
    fault_server.script("/token", Reply(status=400, json={"error": "invalid_grant", "error_description": "spent"}))
    with pytest.raises(tokensmith.LoginRequired) as info:
        client.get_token()
    assert isinstance(info.value.__cause__, tokensmith.InvalidGrant)
    assert client.store.load(client.cache_key) is None


# --- B.8: an outage is not a herd -----------------------------------------------------------------------------


def test_fifty_threads_during_an_outage_share_one_attempt_per_back_off_step(fault_server: FaultServer) -> None:
    """Before: 50 threads made 150 POSTs and slept 75 s one after another under the lock. Now one flight of
    ``attempts`` requests is shared, and callers within the back-off step get the failure without a request."""
    clock = Clock()
    fault_server.default("/token", DOWN)
    client = _client(fault_server, clock)  # RetryPolicy(attempts=3, backoff=0.5, max_wait=30)
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            client.get_token()
        except tokensmith.TokensmithError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 50 and all(isinstance(e, tokensmith.TemporarilyUnavailable) for e in errors)
    assert fault_server.count("/token") == 3  # one flight, three attempts (not 150)
    assert len({id(e) for e in errors}) == 50  # each caller its own exception instance
    for _ in range(20):  # within the back-off step: no request at all
        with pytest.raises(tokensmith.TemporarilyUnavailable):
            client.get_token()
    assert fault_server.count("/token") == 3 and client.stats.throttled >= 20
    clock.advance(31)  # the step has passed (the cap is max_wait=30 s): the next caller tries again
    with pytest.raises(tokensmith.TemporarilyUnavailable):
        client.get_token()
    assert fault_server.count("/token") == 6
    fault_server.default("/token", Reply(json=token_body(1)))  # the IdP is back
    clock.advance(61)
    assert client.get_token().access_token == "at-1" and fault_server.count("/token") == 7


def test_a_retry_after_longer_than_the_step_is_honoured_by_every_caller(fault_server: FaultServer) -> None:
    clock = Clock()
    fault_server.default(
        "/token", Reply(status=503, json={"error": "temporarily_unavailable"}, headers={"Retry-After": "120"})
    )
    client = _client(fault_server, clock)
    with pytest.raises(tokensmith.TemporarilyUnavailable):
        client.get_token()
    assert fault_server.count("/token") == 1  # Retry-After beyond max_wait: not waited for, raised at once
    clock.advance(100)
    with pytest.raises(tokensmith.TemporarilyUnavailable):
        client.get_token()
    assert fault_server.count("/token") == 1  # still inside the server's 120 s
    clock.advance(21)
    with pytest.raises(tokensmith.TemporarilyUnavailable):
        client.get_token()
    assert fault_server.count("/token") == 2


# --- C.10: no lock across the network -----------------------------------------------------------------------


def test_the_store_lock_is_free_while_a_renewal_waits_for_the_network(
    fault_server: FaultServer, tmp_path: object
) -> None:
    """While the token endpoint takes its time, another process (here: a thread of another store object) can
    take the store's lock at once; it would have waited the whole request before."""
    issuer = fault_server.url("/slow")
    # Each answer is held until the other store has taken the lock (a fixed delay was a guess at how long that
    # takes; a loaded machine took longer, and the renewal was over before the check).
    released = {path: threading.Event() for path in ("/slow/.well-known/openid-configuration", "/token")}
    fault_server.script(
        "/slow/.well-known/openid-configuration",
        Reply(
            json={"issuer": issuer, "token_endpoint": fault_server.url("/token")},
            hold=released["/slow/.well-known/openid-configuration"],
        ),
    )
    fault_server.script("/token", Reply(json=token_body(1), hold=released["/token"]))
    store = tokensmith.FileStore(str(tmp_path))
    client = tokensmith.TokenClient.from_issuer(issuer, "svc", "svc-secret", store=store, session=requests.Session())
    done = threading.Event()
    thread = threading.Thread(target=lambda: (client.get_token(), done.set()))
    thread.start()
    other = tokensmith.FileStore(str(tmp_path), lock_timeout=0.5)
    acquired = []
    for path in ("/slow/.well-known/openid-configuration", "/token"):  # during discovery, then the token request
        while fault_server.count(path) == 0 and thread.is_alive():
            time.sleep(0.01)
        assert not done.is_set()
        try:
            with other.lock(client.cache_key):  # raises StoreLockTimeout if the renewal held it
                acquired.append(path)
        finally:
            released[path].set()
    thread.join(30)
    assert done.is_set() and len(acquired) == 2
    assert store.load(client.cache_key) is not None


# --- a mistyped CA bundle path ------------------------------------------------------------------------------------


def test_a_ca_bundle_path_that_does_not_exist_is_a_configuration_error_naming_it(
    fault_server: FaultServer, tmp_path: object
) -> None:
    """It was a bare OSError (requests) or FileNotFoundError (httpx) at the first request; now a typed error at
    construction, sync, async and compat alike, with nothing sent."""
    missing = f"{tmp_path}/corp-ca.pem"
    url = fault_server.url("/token")
    with pytest.raises(tokensmith.ConfigurationError, match=r"corp-ca\.pem.*no CA bundle"):
        tokensmith.TokenClient(url, auth=tokensmith.ClientSecretBasic("svc", "s"), verify=missing)
    with pytest.raises(tokensmith.ConfigurationError, match="no CA bundle"):
        tokensmith.AsyncTokenClient(url, auth=tokensmith.ClientSecretBasic("svc", "s"), verify=missing)
    with pytest.raises(tokensmith.ConfigurationError, match="no CA bundle"):
        token_client.get_token(url, authorization_header="Basic c3ZjOnM=", verify=missing)
    assert fault_server.count("/token") == 0
