"""Issue 10 item 4 at the public API of ``AsyncTokenClient``, against the fault server: asyncio single flight (a
cancelled waiter leaves the renewal running), background renewal as a task, the shared outage rules, store calls
off the event loop, the async httpx auth using the client directly, and the async transport's HTTP policy (total
deadline, no redirects, body cap, no netrc, typed errors). Counts and orderings only; clocks injected where time
matters."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import socket
import ssl
import threading
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

import tokensmith
from fake_clock import Clock
from fault_server import FaultServer, Reply
from loop_stalls import ThreadNotingMemoryStore
from token_replies import DOWN, token_body
from tokensmith.integrations.httpx_auth import TokenAuth

T0 = 1_700_000_000.0


def _client(server: FaultServer, clock: Clock | None = None, **kwargs: Any) -> tokensmith.AsyncTokenClient:
    kwargs.setdefault("auth", tokensmith.ClientSecretBasic("svc", "svc-secret"))
    kwargs.setdefault("rng", lambda: 0.0)
    if clock is not None:
        kwargs.update(clock=clock.wall, monotonic=clock.monotonic, sleep=clock.asleep)
    return tokensmith.AsyncTokenClient(server.url("/token"), **kwargs)


class Events(list[object]):
    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self if isinstance(e, kind)]


async def _settle(client: tokensmith.AsyncTokenClient) -> None:
    """Let a background renewal task finish (it is the client's own task; waiting on it asserts nothing)."""
    flight = client._flight
    if flight is not None:
        await asyncio.wait([flight.task])
    await asyncio.sleep(0)


# --- single flight ---------------------------------------------------------------------------------------------


def test_a_thousand_tasks_with_an_empty_cache_cause_one_request(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=token_body(1), delay=0.2))

    async def go() -> set[str]:
        async with _client(fault_server) as client:
            tokens = await asyncio.gather(*(client.get_token() for _ in range(1000)))
            assert client.stats.token_requests == 1 and client.stats.renewals_started == 1
            return {t.access_token for t in tokens}

    assert asyncio.run(go()) == {"at-1"} and fault_server.count("/token") == 1


def test_a_cancelled_waiter_leaves_the_renewal_running(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=token_body(1), delay=0.5))

    async def go() -> None:
        client = _client(fault_server)
        leader = asyncio.create_task(client.get_token())
        follower = asyncio.create_task(client.get_token())
        while fault_server.count("/token") == 0:  # the request is on its way
            await asyncio.sleep(0.01)
        leader.cancel()  # the caller that started the renewal gives up
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert (await follower).access_token == "at-1"  # the renewal went on
        # Every caller gone: the renewal still lands in memory (and the store) for the next one.
        fault_server.script("/token", Reply(json=token_body(2), delay=0.5))
        waiter = asyncio.create_task(client.get_token(stale=await client.get_token()))
        while fault_server.count("/token") == 1:
            await asyncio.sleep(0.01)
        waiter.cancel()
        await _settle(client)
        assert client.peek() is not None and client.peek().access_token == "at-2"  # type: ignore[union-attr]
        stored = client.store.load(client.cache_key)
        assert stored is not None and stored.access_token == "at-2"
        await client.aclose()

    asyncio.run(go())
    assert fault_server.count("/token") == 2


def test_a_callers_timeout_does_not_reach_the_shared_renewal(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=token_body(1), delay=0.6))

    async def go() -> None:
        async with _client(fault_server) as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get_token(), 0.1)
            assert (await client.get_token()).access_token == "at-1"

    asyncio.run(go())
    assert fault_server.count("/token") == 1


def test_followers_get_their_own_copy_of_a_shared_failure(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(status=401, json={"error": "invalid_client"}, delay=0.2))

    async def go() -> list[BaseException]:
        async with _client(fault_server) as client:
            results = await asyncio.gather(*(client.get_token() for _ in range(20)), return_exceptions=True)
            return [r for r in results if isinstance(r, BaseException)]

    errors = asyncio.run(go())
    assert len(errors) == 20 and all(isinstance(e, tokensmith.InvalidClient) for e in errors)
    assert len({id(e) for e in errors}) == 20 and fault_server.count("/token") == 1


# --- background renewal and outages (the shared rules, driven by tasks) -----------------------------------------


def test_refresh_soon_is_served_at_once_while_one_task_renews(fault_server: FaultServer) -> None:
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1)), Reply(json=token_body(2), delay=0.3))

    async def go() -> None:
        async with _client(fault_server, clock, on_event=events.append) as client:
            first = await client.get_token()
            clock.advance(80)
            served = await asyncio.gather(*(client.get_token() for _ in range(500)))
            assert all(t is first for t in served)  # nobody waited for the renewal under way
            await _settle(client)
            assert (await client.get_token()).access_token == "at-2"
            assert [e.background for e in events.of(tokensmith.RenewalStarted)] == [False, True]

    asyncio.run(go())
    assert fault_server.count("/token") == 2


def test_an_outage_costs_one_request_per_step_and_every_task_keeps_the_valid_token(
    fault_server: FaultServer,
) -> None:
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1)))
    fault_server.default("/token", DOWN)

    async def go() -> None:
        async with _client(fault_server, clock, on_event=events.append) as client:
            first = await client.get_token()
            clock.advance(80)
            for n in range(1, 6):
                served = await asyncio.gather(*(client.get_token() for _ in range(100)))
                assert all(t is first for t in served)
                await _settle(client)
                assert fault_server.count("/token") == n + 1  # one attempt per step, whatever the callers do
                clock.advance(events.of(tokensmith.RenewalFailed)[-1].retry_in)
            fault_server.default("/token", Reply(json=token_body(2)))
            await client.get_token()
            await _settle(client)
            assert (await client.get_token()).access_token == "at-2"
            clock.advance(30)  # past at-1's expiry: at-2 is in use, nothing is sticky
            assert (await client.get_token()).access_token == "at-2"

    asyncio.run(go())
    assert fault_server.count("/token") == 7


def test_background_refresh_off_means_no_task_the_caller_renews(fault_server: FaultServer) -> None:
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(1)), Reply(json=token_body(2)))

    async def go() -> None:
        async with _client(fault_server, clock, background_refresh=False) as client:
            await client.get_token()
            clock.advance(80)
            assert client._flight is None
            assert (await client.get_token()).access_token == "at-2"
            assert client.stats.background_renewals == 0

    asyncio.run(go())


def test_a_failed_save_is_kept_and_saved_again_later_off_the_loop(fault_server: FaultServer) -> None:
    clock = Clock(T0)

    class FullDisk(tokensmith.MemoryStore):
        full = True

        def save(self, key: str, token: tokensmith.Token) -> None:
            if self.full:
                raise tokensmith.StoreError("cannot write token file: No space left on device")
            super().save(key, token)

    store = FullDisk()
    fault_server.script("/token", Reply(json=token_body(1, lifetime=3600)))

    async def go() -> None:
        async with _client(fault_server, clock, store=store) as client:
            token = await client.get_token()
            assert client.stats.save_failures == 1 and store.load(client.cache_key) is None
            store.full = False
            clock.advance(31)  # past the re-save interval: the next call saves it again, without a request
            assert await client.get_token() is token
            for _ in range(500):
                if store.load(client.cache_key) is not None:
                    break
                await asyncio.sleep(0.01)
            assert store.load(client.cache_key) == token

    asyncio.run(go())
    assert fault_server.count("/token") == 1


def test_aclose_lets_a_background_renewal_finish(fault_server: FaultServer) -> None:
    """Its refresh may already have rotated the refresh token at the server: the answer must reach the store."""
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(2, rt="rt-2"), delay=0.3))

    async def go() -> tokensmith.MemoryStore:
        client = _client(fault_server, clock, auth=tokensmith.NoClientAuth("pub"), grant="device_code")
        client.store.save(
            client.cache_key,
            tokensmith.Token("at-1", expires_at=clock.now + 20, issued_at=clock.now - 80, refresh_token="rt-1"),
        )
        assert (await client.get_token()).access_token == "at-1"  # refresh-soon: served; the renewal starts
        await client.aclose()
        return client.store  # type: ignore[return-value]

    store = asyncio.run(go())
    (stored,) = [store.load(key) for key in store._tokens]
    assert stored is not None and stored.refresh_token == "rt-2" and fault_server.count("/token") == 1


def test_a_closed_async_client_makes_no_new_store_thread_or_http_client(fault_server: FaultServer) -> None:
    """After aclose(), the token in memory is still served; past its usable life a typed ClientClosed at once,
    where a new store thread and httpx client (never closed) used to be made quietly."""
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(1)))

    def store_threads() -> int:
        return sum(t.name.startswith("tokensmith-store") for t in threading.enumerate())

    async def go() -> None:
        client = _client(fault_server, clock)
        first = await client.get_token()
        await client.aclose()
        threads = store_threads()
        assert await client.get_token() is first
        clock.advance(100)  # past must_refresh_at
        calls = (client.get_token, client.refresh, client.fetch_client_credentials, client.discover, client.login)
        for call in calls:
            with pytest.raises(tokensmith.ClientClosed, match="this AsyncTokenClient was closed"):
                await call()
        assert store_threads() <= threads
        await client.aclose()  # twice is fine

    asyncio.run(go())
    assert fault_server.count("/token") == 1


# --- no blocking I/O on the loop ----------------------------------------------------------------------------


def test_store_calls_run_off_the_event_loop(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=token_body(1)))
    store = ThreadNotingMemoryStore()

    async def go() -> None:
        async with _client(fault_server, store=store) as client:
            await client.get_token()

    asyncio.run(go())
    assert store.threads and all(name.startswith("tokensmith-store") for name in store.threads), store.threads


def test_a_store_without_leases_is_locked_and_unlocked_on_one_thread(fault_server: FaultServer) -> None:
    """A custom store that only has a lock (thread-bound, like threading.RLock): held across the renewal as in
    the sync client, taken and released by the same store thread."""

    class LockOnlyStore:
        def __init__(self) -> None:
            self.tokens: dict[str, tokensmith.Token] = {}
            self.rlock = threading.RLock()

        def load(self, key: str) -> tokensmith.Token | None:
            return self.tokens.get(key)

        def save(self, key: str, token: tokensmith.Token) -> None:
            self.tokens[key] = token

        def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
            return self.tokens.pop(key, None) is not None

        def lock(self, key: str) -> threading.RLock:
            return self.rlock

    fault_server.script("/token", Reply(json=token_body(1)))
    store = LockOnlyStore()

    async def go() -> str:
        async with _client(fault_server, store=store) as client:  # type: ignore[arg-type]
            return (await client.get_token()).access_token

    assert asyncio.run(go()) == "at-1" and store.rlock.acquire(blocking=False)


# --- the async httpx auth uses the client directly ----------------------------------------------------------


def test_httpx_async_auth_awaits_the_async_client_and_renews_once_on_invalid_token(
    fault_server: FaultServer,
) -> None:
    fault_server.script("/token", Reply(json=token_body(1)), Reply(json=token_body(2)))
    fault_server.script(
        "/api",
        Reply(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, json={}),
    )
    fault_server.default("/api", Reply(json={"ok": True}))

    async def go() -> list[int]:
        async with _client(fault_server) as source, httpx.AsyncClient(auth=TokenAuth(source)) as http:
            return [(await http.get(fault_server.url("/api"))).status_code for _ in range(3)]

    assert asyncio.run(go()) == [200, 200, 200]
    sent = [r.headers["authorization"] for r in fault_server.recorded("/api")]
    assert sent == ["Bearer at-1", "Bearer at-2", "Bearer at-2", "Bearer at-2"]
    assert fault_server.count("/token") == 2


def test_an_async_source_is_refused_where_it_cannot_work(fault_server: FaultServer) -> None:
    from tokensmith.integrations.requests_auth import TokenAuth as RequestsTokenAuth

    client = _client(fault_server)
    with pytest.raises(TypeError, match="AsyncTokenClient"):
        RequestsTokenAuth(client)  # type: ignore[arg-type]
    with httpx.Client(auth=TokenAuth(client)) as http, pytest.raises(TypeError, match=r"httpx\.AsyncClient"):
        http.get(fault_server.url("/api"))


# --- the async transport's HTTP policy ----------------------------------------------------------------------


def _fetch(server: FaultServer, **kwargs: Any) -> tokensmith.Token:
    async def go() -> tokensmith.Token:
        async with _client(server, retry=tokensmith.RetryPolicy(attempts=1), **kwargs) as client:
            return await client.get_token()

    return asyncio.run(go())


def test_a_trickling_server_is_cut_off_by_the_total_deadline(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json=token_body(1), trickle=0.2))
    transport = tokensmith.AsyncTransport(timeout=5.0, total_timeout=1.0)
    with pytest.raises(tokensmith.RequestTimeout, match="total deadline of 1 s"):
        _fetch(fault_server, transport=transport)


def test_redirects_are_not_followed_and_big_bodies_not_read(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(status=307, headers={"Location": fault_server.url("/elsewhere")}))
    with pytest.raises(tokensmith.UnexpectedRedirect):
        _fetch(fault_server)
    assert fault_server.count("/elsewhere") == 0
    fault_server.script("/token", Reply(stream_bytes=4 * 1024 * 1024))
    with pytest.raises(tokensmith.ResponseTooLarge):
        _fetch(fault_server)
    fault_server.script("/token", Reply(json=token_body(1), headers={"Content-Length": str(10**9)}))
    with pytest.raises(tokensmith.ResponseTooLarge, match="announced"):
        _fetch(fault_server)


def test_netrc_never_replaces_the_client_credentials(
    fault_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login intruder password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    fault_server.default("/token", Reply(json=token_body(1)))
    _fetch(fault_server)  # a client made by the transport (trust_env=True)

    async def with_own_client() -> None:  # the caller's client, which the caller closes
        async with httpx.AsyncClient(trust_env=True) as own, _client(fault_server, http_client=own) as client:
            await client.get_token()

    asyncio.run(with_own_client())
    sent = [r.headers.get("authorization") for r in fault_server.recorded("/token")]
    assert sent == [tokensmith.basic_authorization("svc", "svc-secret")] * 2
    assert "Basic " + base64.b64encode(b"intruder:from-netrc").decode() not in sent


def test_transport_failures_are_typed(fault_server: FaultServer) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client_kwargs: dict[str, Any] = {
        "auth": tokensmith.ClientSecretBasic("svc", "s"),
        "retry": tokensmith.RetryPolicy(attempts=1),
    }

    async def fetch(url: str, **kwargs: Any) -> tokensmith.Token:
        async with tokensmith.AsyncTokenClient(url, **client_kwargs, **kwargs) as client:
            return await client.get_token()

    with pytest.raises(tokensmith.ConnectError) as refused:
        asyncio.run(fetch(f"http://127.0.0.1:{port}/token"))
    assert refused.value.request_sent is False and refused.value.transient
    assert not isinstance(refused.value, tokensmith.AuthenticationError)
    # TLS to a server that speaks plain HTTP (loopback https is allowed): a TLS failure, not a rejection.
    context = ssl.create_default_context()
    with pytest.raises(tokensmith.TLSError):
        asyncio.run(fetch(fault_server.url("/token").replace("http://", "https://"), verify=context))
    with pytest.raises(tokensmith.InsecureEndpointError):
        tokensmith.AsyncTokenClient("http://idp.example/token", "c", "s")  # C24, before any network access
    fault_server.script("/token", Reply(body="<html>502</html>", status=502, content_type="text/html"))
    with pytest.raises(tokensmith.NonJSONResponse):
        asyncio.run(fetch(fault_server.url("/token")))


def test_async_device_login_with_async_callbacks_and_a_cancel_event(fault_server: FaultServer) -> None:
    fault_server.script(
        "/device",
        Reply(
            json={"device_code": "dc", "user_code": "UC-1", "verification_uri": "https://v.example", "expires_in": 60}
        ),
    )
    fault_server.default("/token", Reply(status=400, json={"error": "authorization_pending"}))
    prompts: list[str] = []

    async def go() -> None:
        cancel = asyncio.Event()

        async def on_prompt(prompt: tokensmith.DevicePrompt) -> None:
            prompts.append(prompt.user_code)
            asyncio.get_running_loop().call_later(0.2, cancel.set)

        async with tokensmith.AsyncTokenClient(
            fault_server.url("/token"),
            auth=tokensmith.NoClientAuth("pub"),
            device_authorization_endpoint=fault_server.url("/device"),
        ) as client:
            with pytest.raises(tokensmith.DeviceFlowCancelled):
                await client.login(on_prompt=on_prompt, cancel=cancel)

    asyncio.run(go())
    assert prompts == ["UC-1"] and fault_server.count("/token") == 0  # cancelled during the first interval


# --- an async browser login stops when asked (issue 9 review) ----------------------------------------------------


def _browser_client(server: FaultServer, port: int, **kwargs: Any) -> tokensmith.AsyncTokenClient:
    return tokensmith.AsyncTokenClient(
        server.url("/token"),
        auth=tokensmith.NoClientAuth("pub"),
        authorization_endpoint=server.url("/authorize"),
        redirect_uri=f"http://127.0.0.1:{port}/callback",
        login_flow="browser",
        **kwargs,
    )


def _port_is_free(port: int, within: float = 15.0) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound again (the listener closed), waiting up to ``within`` s (far less
    than the 60 s ``login_timeout`` a listener left running would keep the port for)."""
    import time

    deadline = time.monotonic() + within
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.05)


def _no_listeners(within: float = 15.0) -> bool:
    """Whether the redirect listener threads have ended, waiting up to ``within`` s: the login's close() joins them
    for at most 2 s, which a loaded machine can outlast, and they end just after."""
    import time

    deadline = time.monotonic() + within
    while _listeners():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listeners() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tokensmith-redirect" and t.is_alive()]


def test_async_browser_login_stops_on_its_cancel_event(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8252 §7.3 listener lifetime: ``AsyncTokenClient.login(cancel=asyncio.Event())`` ends a browser login
    as it ends a device login (``BrowserLoginCancelled``), and the loopback port is released at once; the listener
    must not keep the port for the whole ``login_timeout``."""
    monkeypatch.setenv("BROWSER", "true")  # a browser that opens nothing: the test never answers
    port = _free_port()

    async def go() -> None:
        cancel = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_prompt(prompt: object) -> None:  # called from the login's worker thread
            loop.call_soon_threadsafe(loop.call_later, 0.2, cancel.set)

        async with _browser_client(fault_server, port, login_timeout=60) as client:
            with pytest.raises(tokensmith.BrowserLoginCancelled):
                await asyncio.wait_for(client.login(on_prompt=on_prompt, cancel=cancel), 30)

    asyncio.run(go())
    assert _port_is_free(port) and _no_listeners()
    assert fault_server.count("/token") == 0


def test_aclose_during_an_async_browser_login_releases_the_port(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aclose()`` cancels a login in progress; the browser login's listener (in its worker thread) must stop
    with it, not go on holding the redirect port (a fixed one: the next login would get ``RedirectPortInUse``)."""
    monkeypatch.setenv("BROWSER", "true")
    port = _free_port()

    async def go() -> None:
        prompted = threading.Event()
        client = _browser_client(fault_server, port, login_timeout=60)
        login = asyncio.ensure_future(client.login(on_prompt=lambda prompt: prompted.set()))
        while not prompted.is_set():
            await asyncio.sleep(0.01)
        await asyncio.wait_for(client.aclose(), 30)  # not after the 60 s login_timeout
        with pytest.raises((asyncio.CancelledError, tokensmith.TokensmithError)):
            await login

    asyncio.run(go())
    assert _port_is_free(port) and _no_listeners()


def test_the_client_works_again_in_a_second_event_loop(fault_server: FaultServer) -> None:
    """``asyncio.run`` twice with one client (a script's two steps, one loop per test): the pooled connections
    belong to the first, closed loop; the second run must renew over fresh ones, not fail with httpx's raw
    ``RuntimeError: Event loop is closed`` (every failure is a library error; this one is not even a failure)."""
    fault_server.script("/token", Reply(json=token_body(1, lifetime=0)), Reply(json=token_body(2, lifetime=0)))
    client = _client(fault_server)
    assert asyncio.run(client.get_token()).access_token == "at-1"
    assert asyncio.run(client.get_token()).access_token == "at-2"  # at-1 has expired: renewed in the new loop
    asyncio.run(client.aclose())
    assert fault_server.count("/token") == 2


def test_a_second_async_login_while_one_runs_shares_it(fault_server: FaultServer) -> None:
    """Single flight for logins: a second ``login()`` task during the first gets its token, no second prompt."""
    fault_server.default(
        "/device",
        Reply(
            json={"device_code": "dc", "user_code": "UC-1", "verification_uri": "https://v.example", "expires_in": 60}
        ),
    )
    fault_server.script("/token", Reply(status=400, json={"error": "authorization_pending"}))
    fault_server.default("/token", Reply(json=token_body(1, rt="rt-1")))
    prompts: list[str] = []

    async def go() -> list[str]:
        async with tokensmith.AsyncTokenClient(
            fault_server.url("/token"),
            auth=tokensmith.NoClientAuth("pub"),
            device_authorization_endpoint=fault_server.url("/device"),
            sleep=lambda seconds: asyncio.sleep(0),
        ) as client:

            async def on_prompt(prompt: tokensmith.DevicePrompt) -> None:
                prompts.append(prompt.user_code)
                await asyncio.sleep(0.1)  # the second login() task reaches the flight meanwhile

            tokens = await asyncio.gather(client.login(on_prompt=on_prompt), client.login(on_prompt=on_prompt))
            return [t.access_token for t in tokens]

    assert asyncio.run(go()) == ["at-1", "at-1"]
    assert prompts == ["UC-1"] and fault_server.count("/device") == 1


def test_concurrent_tasks_get_a_token_that_arrives_already_expired(fault_server: FaultServer) -> None:
    """``expires_in: 0``: the tasks that waited for the renewal get its token too, never ``LoginRequired``."""
    fault_server.default("/token", Reply(json=token_body(1, lifetime=0), delay=0.02))

    async def go() -> list[str]:
        async with _client(fault_server) as client:
            tokens = await asyncio.gather(*(client.get_token() for _ in range(50)))
            return [t.access_token for t in tokens]

    assert asyncio.run(go()) == ["at-1"] * 50


def test_asyncio_run_per_call_closes_each_loops_http_client(fault_server: FaultServer) -> None:
    """The CLI/SDK pattern: one client, ``asyncio.run`` per call, from the main thread and from a worker thread.
    Each loop gets its own httpx client (pooled connections belong to one loop), and each is closed when its loop
    shuts down: none is left for the garbage collector to find as an ``unclosed transport`` ResourceWarning (an
    error under ``-W error``), where the client of every loop but the last used to be dropped open."""
    fault_server.default("/token", Reply(json=token_body(1, lifetime=0)))  # expired on arrival: every call renews
    client = _client(fault_server)
    made: list[httpx.AsyncClient] = []

    async def call() -> None:
        await client.get_token()
        made.append(await client.transport.client())

    def calls() -> None:
        for _ in range(2):
            asyncio.run(call(), debug=True)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        calls()
        worker = threading.Thread(target=calls)
        worker.start()
        worker.join()
        asyncio.run(client.aclose())
        gc.collect()
    assert fault_server.count("/token") == 4 and len({id(c) for c in made}) == 4
    assert [c.is_closed for c in made] == [True] * 4
    assert [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)] == []


class _GatedSigner:
    """A KMS signer for ``PrivateKeyJWT`` that holds its first signature until the test lets it go: a renewal
    under way, for as long as the test needs, with no timing."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        self._sign = lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
        self.signing, self.release = threading.Event(), threading.Event()

    def __call__(self, data: bytes) -> bytes:
        self.signing.set()
        self.release.wait(30)
        return self._sign(data)


def _in_threads(*calls: Any) -> list[object]:
    """Run each call in a thread of its own (each with its own ``asyncio.run``); their results or errors."""
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as error:  # handed to the test
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_event_loops_at_once_share_one_renewal(fault_server: FaultServer) -> None:
    """One client, ``asyncio.run`` in two threads at once (a thread pool of SDK calls): the second loop's caller
    waits for the renewal the first loop runs (one request, C12/C26 single flight), where it used to fail with
    asyncio's raw ``RuntimeError: ... attached to a different loop``."""
    fault_server.default("/token", Reply(json=token_body(1)))
    kms = _GatedSigner()
    client = _client(fault_server, auth=tokensmith.PrivateKeyJWT("svc", kms, alg="ES256", kid="k1"))

    def first() -> str:
        return asyncio.run(client.get_token()).access_token

    def second() -> tuple[bool, str]:
        async def go() -> tuple[bool, str]:
            kms.signing.wait(30)  # the first loop's renewal is under way (nothing else runs on this loop)
            task = asyncio.ensure_future(client.get_token())
            for _ in range(5):
                await asyncio.sleep(0)
            waiting = not task.done()
            kms.release.set()
            return waiting, (await task).access_token

        try:
            return asyncio.run(go())
        finally:
            kms.release.set()

    assert _in_threads(first, second) == ["at-1", (True, "at-1")]
    assert fault_server.count("/token") == 1
    asyncio.run(client.aclose())


def test_a_renewal_cancelled_with_its_event_loop_is_renewed_by_a_caller_in_another(fault_server: FaultServer) -> None:
    """The loop that ran the renewal ends (its ``asyncio.run`` returns, cancelling the task) while a caller in
    another loop waits for it: that caller renews itself, not ``TokensmithError: the client was closed``."""
    fault_server.default("/token", Reply(json=token_body(1)))
    kms = _GatedSigner()
    client = _client(fault_server, auth=tokensmith.PrivateKeyJWT("svc", kms, alg="ES256", kid="k1"))
    second_waits = threading.Event()
    left: list[asyncio.Future[tokensmith.Token]] = []

    def first() -> None:
        async def go() -> None:
            # Left running: asyncio.run cancels this caller, and the renewal, when go() returns.
            left.append(asyncio.ensure_future(client.get_token()))
            await asyncio.to_thread(second_waits.wait, 30)
            kms.release.set()  # the signature is not awaited any more: the loop ends now

        asyncio.run(go())

    def second() -> tuple[bool, str]:
        async def go() -> tuple[bool, str]:
            await asyncio.to_thread(kms.signing.wait, 30)
            task = asyncio.ensure_future(client.get_token())
            for _ in range(5):
                await asyncio.sleep(0)
            waiting = not task.done()
            second_waits.set()
            return waiting, (await task).access_token

        try:
            return asyncio.run(go())
        finally:
            second_waits.set()
            kms.release.set()

    assert _in_threads(first, second) == [None, (True, "at-1")]
    asyncio.run(client.aclose())


def test_a_store_failure_nobody_waits_for_any_more_is_not_left_unretrieved(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller under ``asyncio.timeout`` gives up while the shared store read runs; the store then raises
    something other than ``StoreError`` (a custom backend's bug). asyncio used to log "Task exception was never
    retrieved" at ERROR when the read's task was collected; the next caller still gets the error itself."""
    entered, release = threading.Event(), threading.Event()

    class BrokenStore(tokensmith.MemoryStore):
        def load(self, key: str) -> tokensmith.Token | None:
            entered.set()
            release.wait(30)
            raise RuntimeError("the store's backend broke")

    async def go() -> None:
        async with _client(fault_server, store=BrokenStore()) as client:
            caller = asyncio.ensure_future(client.get_token())
            await asyncio.to_thread(entered.wait, 30)
            loading = client._loading  # the shared read, to wait for it without taking its result
            assert loading is not None
            caller.cancel()  # what asyncio.timeout() does
            with pytest.raises(asyncio.CancelledError):
                await caller
            release.set()
            await asyncio.wait([loading.task])
            del loading, caller
            gc.collect()
            with pytest.raises(RuntimeError, match="backend broke"):
                await client.get_token()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(go())
        gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert fault_server.count("/token") == 0
