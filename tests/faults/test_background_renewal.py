"""Issue 10 items 2, 3 and 5 at the public API of ``TokenClient``, against the fault server, on injected clocks.

Wall clock, monotonic clock, sleep and the jitter draw are injected; the fault server answers as scripted; a
transport records which thread sent each request. What is asserted are counts and orderings: requests the server
saw, requests a caller waited for, events, never durations. With ``rng=lambda: 0.0`` a 100 s token has
``refresh_at`` = receipt + 75 s and ``must_refresh_at`` = receipt + 90 s.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

import tokensmith
from counting_session import ThreadCountingTransport
from fake_clock import Clock
from fault_server import FaultServer, Reply
from token_replies import DOWN, token_body

T0 = 1_700_000_000.0
EXIT_WORKER = Path(__file__).resolve().parents[1] / "helpers" / "exit_worker.py"


class Events:
    """An ``on_event`` callback that records events and lets the test wait for one (a count, not a time)."""

    def __init__(self) -> None:
        self.seen: list[object] = []
        self._cv = threading.Condition()

    def __call__(self, event: object) -> None:
        with self._cv:
            self.seen.append(event)
            self._cv.notify_all()

    def of(self, kind: type[Any]) -> list[Any]:
        with self._cv:
            return [e for e in self.seen if isinstance(e, kind)]

    def wait(self, kind: type[Any], n: int = 1, client: tokensmith.TokenClient | None = None) -> Any:
        """The ``n``-th event of ``kind``, once it has happened (and ``client``'s renewal has wound up)."""
        with self._cv:
            assert self._cv.wait_for(lambda: len([e for e in self.seen if isinstance(e, kind)]) >= n, 30), self.seen
        if client is not None:
            _wait_until(lambda: not _renewing(client))
        return self.of(kind)[n - 1]


def _client(
    server: FaultServer, clock: Clock, events: Events | None = None, **kwargs: Any
) -> tuple[tokensmith.TokenClient, ThreadCountingTransport]:
    transport = kwargs.pop("transport", None) or ThreadCountingTransport(requests.Session())
    kwargs.setdefault("auth", tokensmith.ClientSecretBasic("svc", "svc-secret"))
    kwargs.setdefault("rng", lambda: 0.0)
    client = tokensmith.TokenClient(
        server.url("/token"),
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        transport=transport,
        on_event=events,
        **kwargs,
    )
    return client, transport


def _in_threads(call: Callable[[], object], threads: int, calls: int) -> list[object]:
    results: list[object] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(calls):
            value = call()
            with lock:
                results.append(value)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return results


# --- item 2: background renewal ------------------------------------------------------------------------------


def test_refresh_soon_serves_the_cached_token_at_once_while_one_worker_renews(fault_server: FaultServer) -> None:
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1)), Reply(json=token_body(2)))
    client, transport = _client(fault_server, clock, events)
    first = client.get_token()
    assert (first.refresh_at, first.must_refresh_at) == (clock.now + 75, clock.now + 90)
    clock.advance(80)  # refresh-soon
    transport.worker_gate.clear()  # the renewal is under way and stays so until the gate opens
    served = _in_threads(client.get_token, threads=20, calls=50)
    assert len(served) == 1000 and all(token is first for token in served)  # nobody waited
    transport.worker_gate.set()
    events.wait(tokensmith.RenewalSucceeded, 2, client)
    assert client.get_token().access_token == "at-2"
    # One worker, one request per renewal; the only request a caller waited for was the very first.
    assert transport.by_callers() == 1 and transport.by_worker() == 1 and fault_server.count("/token") == 2
    assert [e.background for e in events.of(tokensmith.RenewalStarted)] == [False, True]
    assert client.stats.background_renewals == 1 and client.stats.renewals_succeeded == 2


def test_without_background_refresh_the_first_caller_renews_inline_and_no_thread_starts(
    fault_server: FaultServer,
) -> None:
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(1)), Reply(json=token_body(2)))
    client, transport = _client(fault_server, clock, background_refresh=False)
    first = client.get_token()
    clock.advance(80)
    renewed = client.get_token()  # today's behaviour: this caller renews, ahead of expiry
    assert first.access_token == "at-1" and renewed.access_token == "at-2"
    assert transport.by_callers() == 2 and transport.by_worker() == 0
    assert not any(t.name == "tokensmith-renewal" for t in threading.enumerate())
    assert client.stats.background_renewals == 0


def test_past_must_refresh_at_the_caller_waits_for_the_renewal(fault_server: FaultServer) -> None:
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(1)), Reply(json=token_body(2)))
    client, transport = _client(fault_server, clock)
    client.get_token()
    clock.advance(95)  # past must_refresh_at (90 s), still valid
    assert client.get_token().access_token == "at-2"
    assert transport.by_callers() == 2 and transport.by_worker() == 0


def test_the_server_refresh_in_and_the_jitter_draw_set_refresh_at(fault_server: FaultServer) -> None:
    clock = Clock(T0)
    fault_server.script(
        "/token", Reply(json={**token_body(1, lifetime=3600), "refresh_in": 1200}), Reply(json=token_body(2))
    )
    client, _ = _client(fault_server, clock, rng=lambda: 0.5)
    token = client.get_token()
    assert token.refresh_at == clock.now + 1200 - 0.5 * 0.1 * 1200  # jitter: earlier by up to 10 % of the way
    jittered, _ = _client(fault_server, clock, rng=lambda: 0.5)
    assert jittered.get_token().refresh_at == clock.now + 75 - 0.5 * 0.1 * 75


def test_stale_and_min_valid_are_renewed_inline_even_in_the_refresh_soon_window(fault_server: FaultServer) -> None:
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(1)), Reply(json=token_body(2)), Reply(json=token_body(3)))
    client, transport = _client(fault_server, clock)
    first = client.get_token()
    clock.advance(80)
    assert client.get_token(stale=first).access_token == "at-2"  # never the rejected token
    assert client.get_token(min_valid=200).access_token == "at-3"  # at-2 lives 100 s: not enough
    assert transport.by_callers() == 3 and transport.by_worker() == 0


def test_a_token_only_a_person_can_renew_is_used_until_it_must_be_renewed(fault_server: FaultServer) -> None:
    clock = Clock(T0)
    client, transport = _client(fault_server, clock, auth=tokensmith.NoClientAuth("pub"), grant="device_code")
    client.store.save(client.cache_key, tokensmith.Token("at-0", expires_at=clock.now + 100, issued_at=clock.now))
    clock.advance(80)  # refresh-soon, but no refresh token: no worker, no request, no login prompt yet
    assert client.get_token().access_token == "at-0"
    clock.advance(15)  # past must_refresh_at: now a login is needed
    with pytest.raises(tokensmith.LoginRequired):
        client.get_token()
    assert fault_server.count() == 0 and transport.by_worker() == 0


def test_another_processes_lease_makes_the_worker_wait_and_then_take_its_token(fault_server: FaultServer) -> None:
    """Per store across processes: a worker that finds another process's live lease does nothing, looks again
    after the minimum gap, and then finds that process's token in the store."""
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1)))
    store = tokensmith.MemoryStore()
    client, transport = _client(fault_server, clock, events, store=store)
    first = client.get_token()
    store.claim(client.cache_key, "elsewhere:1:abc", "renew", 60)  # the other process renews
    clock.advance(80)
    assert client.get_token() is first
    _wait_until(lambda: not _renewing(client))
    assert fault_server.count("/token") == 1 and client.stats.renewals_started == 1  # nothing done
    assert client.get_token() is first  # within the minimum gap: no new look at the store either
    # The other process stores its token and lets go of the lease.
    theirs = tokensmith.Token("at-theirs", expires_at=clock.now + 100, issued_at=clock.now)
    store.save(client.cache_key, theirs)
    store.release(client.cache_key, "elsewhere:1:abc")
    clock.advance(1)
    client.get_token()
    _wait_until(lambda: client.get_token() == theirs)
    assert fault_server.count("/token") == 1 and client.stats.store_hits == 1 and transport.by_worker() == 0


# --- item 3: outage-proof -------------------------------------------------------------------------------------


def test_an_outage_while_the_token_is_valid_costs_one_request_per_back_off_step(fault_server: FaultServer) -> None:
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1)))
    fault_server.default("/token", DOWN)
    client, transport = _client(fault_server, clock, events)
    first = client.get_token()
    clock.advance(80)
    assert client.get_token() is first  # starts the worker
    failed = events.wait(tokensmith.RenewalFailed, 1, client)
    assert failed.background and failed.transient and failed.error_class == "TemporarilyUnavailable"
    assert failed.valid_for == 20 and failed.retry_in == 1.0 and failed.status_code == 503
    steps = [failed.retry_in]
    for n in range(2, 8):  # the clock walks past must_refresh_at (90 s) meanwhile: still served, at once
        assert all(token is first for token in _in_threads(client.get_token, threads=5, calls=20))
        assert fault_server.count("/token") == n  # nothing new within the step, whatever the callers do
        clock.advance(steps[-1])  # exactly one step later: the next attempt may go
        assert client.get_token() is first
        steps.append(events.wait(tokensmith.RenewalFailed, n, client).retry_in)
    assert all(token is first for token in _in_threads(client.get_token, threads=5, calls=20))
    assert fault_server.count("/token") == 8 and transport.by_callers() == 1  # nobody waited for a failure
    assert steps == [1.0, 1.0, 1.0, 2.0, 4.0, 8.0, 15.0]  # doubling (jitter draw 0: the lower half), capped later
    assert client.stats.served_stale > 100 and client.stats.consecutive_failures == 7
    assert len(events.of(tokensmith.ServedStale)) == 7  # one event per failed step, not one per call
    # The IdP comes back: one renewal.
    fault_server.default("/token", Reply(json=token_body(2)))
    clock.advance(steps[-1])
    client.get_token()
    events.wait(tokensmith.RenewalSucceeded, 2, client)
    assert client.get_token().access_token == "at-2" and fault_server.count("/token") == 9
    assert client.stats.consecutive_failures == 0


def test_after_expiry_callers_get_the_transient_error_fast_not_a_request_each(fault_server: FaultServer) -> None:
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1)))
    fault_server.default("/token", Reply(status=503, json={"error": "down"}, headers={"Retry-After": "10"}))
    client, transport = _client(fault_server, clock, events, retry=tokensmith.RetryPolicy(attempts=1))
    client.get_token()
    clock.advance(95)  # past must_refresh_at: this caller renews, fails, and still gets the valid token
    assert client.get_token().access_token == "at-1"
    assert events.wait(tokensmith.RenewalFailed, 1, client).retry_in == 10
    clock.advance(6)  # expired, within the back-off step
    errors = _in_threads(lambda: _raised(client.get_token), threads=10, calls=10)
    assert all(isinstance(e, tokensmith.OAuthError) and e.transient for e in errors)
    assert fault_server.count("/token") == 2 and client.stats.throttled == 100  # no request per caller
    clock.advance(4)  # the step has passed: the next caller tries again (once): nothing is sticky
    with pytest.raises(tokensmith.OAuthError):
        client.get_token()
    assert fault_server.count("/token") == 3 and transport.by_callers() == 3


def test_the_worker_honours_retry_after(fault_server: FaultServer) -> None:
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1, lifetime=1000)))
    fault_server.default("/token", Reply(status=429, json={"error": "slow"}, headers={"Retry-After": "40"}))
    client, _ = _client(fault_server, clock, events)
    first = client.get_token()
    clock.advance(760)  # refresh-soon (750 s)
    client.get_token()
    assert events.wait(tokensmith.RenewalFailed, 1, client).retry_in == 40
    clock.advance(39)
    assert client.get_token() is first and fault_server.count("/token") == 2
    clock.advance(1)
    client.get_token()
    events.wait(tokensmith.RenewalFailed, 2, client)
    assert fault_server.count("/token") == 3


def test_a_rejection_in_the_background_paces_the_worker_instead_of_hammering(fault_server: FaultServer) -> None:
    clock, events = Clock(T0), Events()
    fault_server.script("/token", Reply(json=token_body(1)))
    fault_server.default("/token", Reply(status=401, json={"error": "invalid_client"}))
    client, _ = _client(fault_server, clock, events)
    first = client.get_token()
    clock.advance(80)
    client.get_token()
    failed = events.wait(tokensmith.RenewalFailed, 1, client)
    assert not failed.transient and failed.error_class == "InvalidClient" and failed.retry_in == 1.0
    assert all(t is first for t in _in_threads(client.get_token, threads=5, calls=20))
    assert fault_server.count("/token") == 2
    clock.advance(25)  # expired: the caller now gets the server's verdict itself
    with pytest.raises(tokensmith.InvalidClient):
        client.get_token()


# --- item 5: observability without secrets ----------------------------------------------------------------


def test_events_and_logs_carry_no_secrets_and_a_failing_observer_breaks_nothing(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    seen: list[object] = []

    def observer(event: object) -> None:
        seen.append(event)
        raise RuntimeError("observer bug")

    fault_server.script(
        "/token", Reply(json=token_body(1, rt="rt-secret-1")), DOWN, Reply(json=token_body(2, rt="rt-secret-2"))
    )
    client, _ = _client(fault_server, clock, auth=tokensmith.NoClientAuth("pub"), grant="device_code")
    client.on_event = observer
    client.store.save(client.cache_key, tokensmith.Token("at-0", expires_at=clock.now - 1, refresh_token="rt-secret-0"))
    with caplog.at_level(logging.DEBUG, logger="tokensmith"):
        client.get_token()
        clock.advance(80)
        client.get_token()
        _wait_until(lambda: any(isinstance(e, tokensmith.RenewalFailed) for e in seen) and not _renewing(client))
        clock.advance(1)
        client.get_token()
        _wait_until(lambda: client.get_token().access_token == "at-2")
    kinds = [type(e).__name__ for e in seen]
    assert kinds[:2] == ["RenewalStarted", "RenewalSucceeded"]
    assert {"RenewalFailed", "ServedStale"} <= set(kinds) and kinds[-1] == "RenewalSucceeded"
    text = repr(seen) + "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("at-0", "at-1", "at-2", "rt-secret-0", "rt-secret-1", "rt-secret-2"):
        assert secret not in text
    assert any("on_event callback failed" in r.getMessage() for r in caplog.records)


def test_close_waits_for_a_background_renewal_in_progress(fault_server: FaultServer) -> None:
    """The worker may have sent a refresh (the server rotated the refresh token): only its answer holds the new
    one, so close() lets it land in the store before returning."""
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(2, rt="rt-2")))
    client, transport = _client(fault_server, clock, auth=tokensmith.NoClientAuth("pub"), grant="device_code")
    client.store.save(
        client.cache_key,
        tokensmith.Token("at-1", expires_at=clock.now + 20, issued_at=clock.now - 80, refresh_token="rt-1"),
    )
    transport.worker_gate.clear()
    assert client.get_token().access_token == "at-1"  # refresh-soon: served, the worker starts
    _wait_until(lambda: transport.by_worker() == 1)  # the refresh is on its way (held at the gate)
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # close() waits for the renewal
    transport.worker_gate.set()
    closer.join(30)
    stored = client.store.load(client.cache_key)
    assert not closer.is_alive() and stored is not None and stored.refresh_token == "rt-2"


def test_a_process_that_exits_right_away_still_stores_the_rotated_refresh_token(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """A one-shot process (a CLI run) that exits right after a call in the refresh-soon window: the worker is a
    daemon thread, but its renewal is waited for at exit, so the rotated refresh token is not lost."""
    store = tokensmith.FileStore(str(tmp_path))
    client = tokensmith.TokenClient(
        fault_server.url("/token"), auth=tokensmith.NoClientAuth("pub"), grant="device_code", store=store
    )
    now = time.time()
    store.save(
        client.cache_key, tokensmith.Token("at-1", expires_at=now + 20, issued_at=now - 80, refresh_token="rt-1")
    )
    fault_server.script("/token", Reply(json=token_body(2, rt="rt-2"), delay=1.0))
    done = subprocess.run(
        [sys.executable, str(EXIT_WORKER), fault_server.url("/token"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "at-1", done.stderr
    stored = store.load(client.cache_key)
    assert fault_server.count("/token") == 1 and stored is not None and stored.refresh_token == "rt-2"


def test_close_starts_no_more_background_renewals(fault_server: FaultServer) -> None:
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(1)))
    client, transport = _client(fault_server, clock)
    first = client.get_token()
    client.close()
    clock.advance(80)
    assert client.get_token() is first and transport.by_worker() == 0


def test_a_closed_client_serves_the_token_it_holds_and_makes_no_request(fault_server: FaultServer) -> None:
    """After close() (a shutdown in progress), callers still holding the client get the token in memory while it
    is usable; past that, a typed ClientClosed at once: no request, no store read, no worker."""
    clock = Clock(T0)
    fault_server.script("/token", Reply(json=token_body(1)))
    client, transport = _client(fault_server, clock)
    first = client.get_token()
    client.close()
    assert client.get_token() is first
    clock.advance(100)  # past must_refresh_at
    for call in (client.get_token, client.refresh, client.fetch_client_credentials, client.discover):
        with pytest.raises(tokensmith.ClientClosed, match="this TokenClient was closed; make a new one"):
            call()
    with pytest.raises(tokensmith.ClientClosed):
        client.login()
    assert fault_server.count("/token") == 1 and transport.by_worker() == 0
    client.close()  # twice is fine


def _raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except tokensmith.TokensmithError as error:
        return error
    return None


def _renewing(client: tokensmith.TokenClient) -> bool:
    return client._flight is not None


def _wait_until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to get somewhere (bounded, so a bug fails the test instead of hanging it)."""
    done = threading.Event()
    for _ in range(3000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the condition never became true")


# --- fork while a background renewal is in flight (issue 10 review) ----------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_during_a_background_renewal_renews_on_its_own(fault_server: FaultServer) -> None:
    """A process forked while the background worker waits for the server (a pre-forking server, multiprocessing's
    fork start method) inherits the in-flight renewal but not the thread running it. The child must not wait for
    that renewal forever once its token must be renewed: it renews itself (C26's single flight is per process)."""
    clock = Clock(T0)
    parent_renewal = threading.Event()
    fault_server.script(
        "/token",
        Reply(json=token_body(1)),
        Reply(json=token_body(2), hold=parent_renewal),  # the parent's background renewal, in flight across the fork
    )
    fault_server.default("/token", Reply(json=token_body(3)))
    client, _ = _client(fault_server, clock)
    assert client.get_token().access_token == "at-1"
    clock.advance(80)  # refresh-soon: served at once, the worker renews
    assert client.get_token().access_token == "at-1"
    _wait_until(lambda: fault_server.count("/token") == 2)
    assert _renewing(client)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 3
        try:
            clock.advance(25)  # the token has expired: a caller must get a renewed token
            got: list[str] = []
            worker = threading.Thread(target=lambda: got.append(client.get_token().access_token), daemon=True)
            worker.start()
            worker.join(30)
            status = 0 if got == ["at-3"] else 4 if got else 5
        finally:
            os._exit(status)
    _, code = os.waitpid(pid, 0)
    parent_renewal.set()  # held until the child is done: a fixed delay could end before the fork on a slow machine
    assert os.waitstatus_to_exitcode(code) == 0, "the child hung on the parent's renewal (5) or got another token (4)"
    _wait_until(lambda: not _renewing(client))
    assert client.get_token().access_token == "at-2"


class _NotedDone(threading.Event):
    """A renewal's ``done`` event that tells the test when a caller has started waiting on it."""

    def __init__(self, waiting: threading.Event) -> None:
        super().__init__()
        self._waiting = waiting

    def wait(self, timeout: float | None = None) -> bool:
        self._waiting.set()
        return super().wait(timeout)


def _note_waiters(client: tokensmith.TokenClient) -> threading.Event:
    """While ``client`` renews: an event set once another caller waits for that renewal. A fixed sleep guessed how
    long the caller takes to get there; on a loaded machine it had not, and it then led a renewal of its own."""
    flight = client._flight
    assert flight is not None
    waiting = threading.Event()
    flight.done = _NotedDone(waiting)
    return waiting


class _InterruptedTransport(ThreadCountingTransport):
    """The first token request is interrupted (Ctrl-C lands in the leader's thread while it waits for the
    server), once a second caller waits for that renewal."""

    def __init__(self, follower_waiting: threading.Event) -> None:
        super().__init__(requests.Session())
        self._follower_waiting = follower_waiting
        self._first = True

    def post(self, request: Any) -> Any:
        if self._first:
            self._first = False
            assert self._follower_waiting.wait(30)  # the follower reached the flight and waits on it
            raise KeyboardInterrupt
        return super().post(request)


def test_a_ctrl_c_in_the_leader_is_not_raised_in_the_threads_waiting_for_it(fault_server: FaultServer) -> None:
    """KeyboardInterrupt in the thread leading a renewal (the main thread, where Ctrl-C lands) is that thread's
    own: a caller in another thread waiting for the same renewal gets a library error (TokensmithError, not an
    AuthenticationError: nothing was rejected), never a KeyboardInterrupt raised in a worker thread."""
    fault_server.default("/token", Reply(json=token_body(1)))
    follower_waiting = threading.Event()
    client, _ = _client(fault_server, Clock(T0), transport=_InterruptedTransport(follower_waiting))
    outcome: list[BaseException | str] = []

    def follower() -> None:
        try:
            outcome.append(client.get_token().access_token)
        except BaseException as error:  # what reached this thread is the point
            outcome.append(error)

    def start_follower() -> None:
        _wait_until(lambda: _renewing(client))
        waiting = _note_waiters(client)
        worker = threading.Thread(target=follower)
        worker.start()
        waiting.wait(30)
        follower_waiting.set()
        worker.join(30)

    helper = threading.Thread(target=start_follower)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        client.get_token()
    helper.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], tokensmith.TokensmithError), outcome
    assert not isinstance(outcome[0], tokensmith.AuthenticationError)
    assert client.get_token().access_token == "at-1"  # nothing is left in a bad state


def test_a_second_login_while_one_runs_shares_it(fault_server: FaultServer) -> None:
    """Single flight for logins too: ``login()`` called while another thread's login is waiting for the person
    gets that login's token. It must not wait for it and then start a second one (a second prompt, a second
    code for the person to enter)."""
    fault_server.default(
        "/device",
        Reply(
            json={"device_code": "dc", "user_code": "UC-1", "verification_uri": "https://v.example", "expires_in": 60}
        ),
    )
    approved = threading.Event()
    fault_server.script("/token", Reply(status=400, json={"error": "authorization_pending"}))
    fault_server.default("/token", Reply(json=token_body(1, rt="rt-1")))
    prompts: list[str] = []
    second_waiting = threading.Event()

    def on_prompt(prompt: tokensmith.DevicePrompt) -> None:
        prompts.append(prompt.user_code)
        if len(prompts) == 1:
            assert second_waiting.wait(30)  # the second login() reached the flight and waits on it
        approved.set()

    client = tokensmith.TokenClient(
        fault_server.url("/token"),
        auth=tokensmith.NoClientAuth("pub"),
        device_authorization_endpoint=fault_server.url("/device"),
        sleep=lambda seconds: None,
        rng=lambda: 0.0,
    )
    got: list[str] = []

    def second() -> None:
        _wait_until(lambda: _renewing(client))
        waiting = _note_waiters(client)
        worker = threading.Thread(target=lambda: got.append(client.login(on_prompt=on_prompt).access_token))
        worker.start()
        waiting.wait(30)
        second_waiting.set()
        worker.join(30)

    helper = threading.Thread(target=second)
    helper.start()
    first = client.login(on_prompt=on_prompt)
    helper.join(60)
    assert first.access_token == "at-1" and got == ["at-1"]
    assert prompts == ["UC-1"] and fault_server.count("/device") == 1


def test_concurrent_callers_get_a_token_that_arrives_already_expired(fault_server: FaultServer) -> None:
    """A server granting ``expires_in: 0`` (or a lifetime shorter than the round trip, or a skewed clock): the
    token is expired on arrival. The caller that renewed gets it; the callers that waited for that renewal must
    get it too (or renew again), never ``LoginRequired`` ("not the rejected one": nothing was rejected)."""
    fault_server.default("/token", Reply(json=token_body(1, lifetime=0), delay=0.02))
    client = tokensmith.TokenClient(fault_server.url("/token"), auth=tokensmith.ClientSecretBasic("svc", "s"))
    results = _in_threads(lambda: client.get_token().access_token, threads=16, calls=5)
    assert results == ["at-1"] * 80, sorted({repr(r) for r in results})


class _BuggyTransport(ThreadCountingTransport):
    """Answers the first token request; then fails as a bug would (not a library error)."""

    def __init__(self) -> None:
        super().__init__(requests.Session())
        self.posts = 0

    def post(self, request: Any) -> Any:
        self.posts += 1
        if self.posts > 1:
            raise RuntimeError("a bug in a custom transport")
        return super().post(request)


def test_an_unexpected_error_in_the_background_renewal_is_reported_and_paced(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A background renewal that ends with an error that is not the library's (a bug in a custom transport,
    store or credential callable) has nobody waiting for it: it must reach ``on_event`` and the log (with its
    traceback), and the next attempt waits for the back-off like after any failure, not one per call."""
    fault_server.default("/token", Reply(json=token_body(1)))
    clock, events = Clock(T0), Events()
    transport = _BuggyTransport()
    client, _ = _client(fault_server, clock, events, transport=transport)
    client.get_token()
    clock.advance(80)  # refresh-soon: the worker renews, and fails
    with caplog.at_level(logging.WARNING, logger="tokensmith"):
        for _ in range(20):
            assert client.get_token().access_token == "at-1"
            _wait_until(lambda: not _renewing(client))
    failed = events.of(tokensmith.RenewalFailed)
    assert transport.posts == 2 and len(failed) == 1  # one attempt within the back-off step, not twenty
    assert failed[0].error_class == "RuntimeError" and failed[0].background and failed[0].retry_in
    assert any(r.levelno >= logging.ERROR and r.exc_info for r in caplog.records)
