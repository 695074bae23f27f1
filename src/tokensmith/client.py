"""``TokenClient``: discovery, grants, a token store, and renewal that no caller waits on, never herds, never
hangs, never loses a token.

``get_token()`` is the one call most code needs. It returns a usable token by trying, in order: the token in
memory, the store, a refresh, a new client-credentials token, and an interactive device login (only when the
caller allows it; otherwise ``LoginRequired``).

How a renewal is coordinated, and why:

- **Two deadlines per token** (fixed at receipt, see ``tokensmith.RenewalPolicy``): before ``refresh_at`` the
  token is simply returned. Between ``refresh_at`` and ``must_refresh_at`` it is still returned at once (from
  memory, or from the store in a new process), and one **background worker** (a daemon thread, started on
  demand, one at a time) renews it. Only past ``must_refresh_at`` does a caller wait for a renewal.
  ``background_refresh=False`` starts no threads: the first caller past ``refresh_at`` then renews inline while
  the others keep using the valid token. A renewal the worker has under way is waited for by ``close()`` and at
  interpreter exit (bounded by its request deadline): a refresh the server has answered may have rotated the
  refresh token, and only that answer holds the new one.
- **One renewal per client** (single flight): the first caller that needs the network leads; callers that still
  hold a valid token keep using it, the others wait for the leader's outcome (an event, never a lock held
  across the network). The background worker is such a leader, with nobody waiting on it.
- **One renewal per store, across processes**: under the store's lock (held for a read and a small write only)
  the leader re-reads the store and, with a store that supports it, writes a short *lease* ("renewing until
  T"). Another process that finds a live lease serves its still-valid token (its background worker does nothing
  and looks again later), or waits for the lease holder's result, or (for someone else's interactive login,
  when it may not wait) gets ``LoginInProgress`` at once. A rotated refresh token is therefore never spent
  twice (C26), and no lock is held across a network wait, a back-off sleep or a person's login.
- **Never lose a token**: the renewed token is kept in memory before it is stored; if storing fails (disk full,
  read-only home) it is still returned and used, and saved again later. Only the server's own verdict
  (``invalid_grant``) discards a refresh token, and only if the store still holds that very one.
- **Outages**: a failure is remembered for a back-off step (capped, jittered, exponential, honouring
  ``Retry-After``, shared by every caller). While the token is still valid every caller keeps getting it at once
  and the background worker tries once per step; once it has expired, callers get the remembered error at once
  instead of each making requests of their own. The next step does try again: nothing is sticky.
- **Observable**: ``on_event`` receives ``RenewalStarted``/``RenewalSucceeded``/``RenewalFailed``/``ServedStale``
  (no secrets in them), the same is logged on ``tokensmith.client``, and ``client.stats`` counts it.

The rules themselves live in ``tokensmith._engine`` (shared with ``AsyncTokenClient``); this module is the
thread-based driver.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._discovery import METADATA_TTL, cached_discovery
from ._engine import (
    DEFAULT_LOGIN_LEASE,
    RESAVE_INTERVAL,
    ClientCore,
    ClientStats,
    Force,
    Grant,
    LoginFlow,
    LoginUI,
    Renewal,
    _copy_error,
)
from ._flow import Cancel, Flow, SimpleIO, SyncCalls, T, run
from ._protocol.client_auth import BasicEncoding, ClientAuth
from ._protocol.discovery import ServerMetadata
from ._protocol.messages import HttpRequest, HttpResponse
from ._protocol.params import ScopeInput
from ._protocol.renewal import RenewalPolicy
from ._retry import RetryPolicy
from ._threads import start_daemon
from ._transport import DEFAULT_TIMEOUT, Timeout, Transport, Verify
from .device import DevicePrompt, PollProgress
from .events import RenewalEvent
from .exceptions import LoginRequired, TokensmithError
from .grants import ACCESS_TOKEN_TYPE, TokenExchangeGrant
from .stores.base import TokenStore
from .token import Token

if TYPE_CHECKING:
    from .dpop import DPoPKey

logger = logging.getLogger("tokensmith.client")

__all__ = ["DEFAULT_LOGIN_LEASE", "METADATA_TTL", "RESAVE_INTERVAL", "ClientStats", "TokenClient", "discover"]


class _Flight:
    """One renewal in progress; the other callers of the same client wait for its outcome."""

    def __init__(self, *, background: bool = False, login: bool = False) -> None:
        self.background = background
        #: A login by a person: a concurrent ``login()`` takes its outcome instead of starting another.
        self.login = login
        self.done = threading.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Token:
        self.done.wait()
        if self.error is not None and not isinstance(self.error, Exception):
            # Ctrl-C (or SystemExit) in the leader's thread is that thread's own: not raised in this one.
            raise TokensmithError(
                f"the renewal this call waited for was interrupted ({type(self.error).__name__}) in the thread "
                "running it; nothing was renewed"
            ) from self.error
        if self.error is not None:
            raise _copy_error(self.error)
        assert self.token is not None
        return self.token


class _ThreadIO(SyncCalls):
    """How the flows' effects are carried out in this driver: the transport, the client's sleep, and a
    cancel event's ``wait`` for a login's polling."""

    def __init__(
        self, transport: Transport, sleep: Callable[[float], None], sending: Callable[[HttpRequest], None]
    ) -> None:
        self._transport = transport
        self._sleep = sleep
        self._sending = sending

    def post(self, request: HttpRequest) -> HttpResponse:
        self._sending(request)
        return self._transport.post(request)

    def get(self, url: str) -> HttpResponse:
        return self._transport.get(url)

    def sleep(self, seconds: float, cancel: Cancel | None) -> bool:
        if isinstance(cancel, threading.Event):
            return cancel.wait(seconds)
        self._sleep(seconds)
        return cancel is not None and cancel.is_set()


class TokenClient(ClientCore):
    """An OAuth 2.0 client for one authorization server, one client id and one set of token parameters.

    Give either explicit endpoints (``token_endpoint``, ``device_authorization_endpoint``) or an ``issuer``
    (``TokenClient.from_issuer``) whose metadata is discovered before the first network request (or when you call
    ``discover()``) and cached. Client authentication: ``auth`` as an object (``NoClientAuth``,
    ``ClientSecretBasic``, ``ClientSecretPost``, ``PrivateKeyJWT``, ``ClientSecretJWT``), or ``client_secret`` (Basic
    with RFC 6749 §2.3.1 encoding, or ``client_secret_post``/``client_secret_jwt`` when the server's metadata only
    lists that), or ``private_key`` (``private_key_jwt``: PEM, a JWK or a ``cryptography`` key). ``grant`` may
    also be a ``JWTBearerGrant`` or a ``TokenExchangeGrant``. ``grant`` defaults to client credentials
    for a confidential client and the device flow for a public one. ``timeout`` is the HTTP timeout of each
    request (also its total deadline); ``login_timeout`` bounds an interactive login.

    Renewal: ``renewal`` (a ``RenewalPolicy``) sets the windows and the pace of attempts after failures;
    ``background_refresh=False`` keeps every renewal in the calling thread (no worker thread is ever started);
    ``on_event`` receives the renewal events (see ``tokensmith.events``). ``clock`` (wall), ``monotonic``,
    ``sleep`` and ``rng`` (floats in ``[0, 1)`` for jitter) may be injected for tests.

    DPoP (RFC 9449, the ``jwt`` extra): ``dpop=True`` makes a key (kept in the store's key slot, apart from the
    token) or ``dpop=DPoPKey(...)`` uses yours; every token request then carries a fresh proof, tokens come back
    ``token_type="DPoP"`` bound to the key (``Token.jkt``), and ``dpop_headers()`` makes proofs for your own calls.
    See ``tokensmith.dpop``; ``TokenClient.for_resource`` configures a client from a protected resource (RFC 9728).
    """

    transport: Transport

    def __init__(
        self,
        token_endpoint: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        issuer: str | None = None,
        auth: ClientAuth | None = None,
        device_authorization_endpoint: str | None = None,
        authorization_endpoint: str | None = None,
        redirect_uri: str | None = None,
        login_flow: LoginFlow = "device",
        scope: ScopeInput = None,
        audience: str | None = None,
        resource: str | Iterable[str] | None = None,
        grant: Grant | None = None,
        store: TokenStore | None = None,
        interactive: bool = False,
        on_prompt: Callable[[DevicePrompt], None] | None = None,
        on_progress: Callable[[PollProgress], None] | None = None,
        login_timeout: float | None = None,
        transport: Transport | None = None,
        session: Any = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: Verify = None,
        proxies: Mapping[str, str] | None = None,
        basic_encoding: BasicEncoding = "rfc6749",
        retry: RetryPolicy | None = None,
        accepted_token_types: Iterable[str] = ("bearer",),
        renewal: RenewalPolicy | None = None,
        background_refresh: bool = True,
        on_event: Callable[[RenewalEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        private_key: Any = None,
        dpop: bool | DPoPKey | None = None,
    ) -> None:
        super().__init__(
            token_endpoint,
            client_id,
            client_secret,
            transport=transport or Transport(session, timeout=timeout, verify=verify, proxies=proxies),
            issuer=issuer,
            auth=auth,
            device_authorization_endpoint=device_authorization_endpoint,
            authorization_endpoint=authorization_endpoint,
            redirect_uri=redirect_uri,
            login_flow=login_flow,
            scope=scope,
            audience=audience,
            resource=resource,
            grant=grant,
            store=store,
            interactive=interactive,
            on_prompt=on_prompt,
            on_progress=on_progress,
            login_timeout=login_timeout,
            basic_encoding=basic_encoding,
            retry=retry,
            accepted_token_types=accepted_token_types,
            renewal=renewal,
            background_refresh=background_refresh,
            on_event=on_event,
            clock=clock,
            monotonic=monotonic,
            rng=rng,
            private_key=private_key,
            dpop=dpop,
        )
        self._sleep = sleep
        self._io = _ThreadIO(self.transport, sleep, self._sending)
        self._flight: _Flight | None = None
        _clients.add(self)

    def _run(self, flow: Flow[T]) -> T:
        return run(flow, self._io)

    @classmethod
    def for_resource(
        cls,
        url: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        www_authenticate: str | None = None,
        choose_authorization_server: Callable[[Sequence[str]], str] | None = None,
        **kwargs: Any,
    ) -> TokenClient:
        """A client for the protected resource at ``url``, configured from its metadata (RFC 9728), the chosen
        authorization server's metadata (RFC 8414/OIDC) and ``resource=url`` (RFC 8707); see
        ``tokensmith.resource``. Network I/O happens here, once. ``www_authenticate``: the header of a 401 the
        resource answered (its ``resource_metadata`` is then used; same origin only). DPoP is turned on when the
        resource requires DPoP-bound tokens. Other arguments are the constructor's, and win over discovery.
        ``client.resource_metadata`` keeps the validated document."""
        from .resource import resource_plan_flow

        transport = kwargs.pop("transport", None) or Transport(
            kwargs.pop("session", None),
            timeout=kwargs.pop("timeout", DEFAULT_TIMEOUT),
            verify=kwargs.pop("verify", None),
            proxies=kwargs.pop("proxies", None),
        )
        plan = run(
            resource_plan_flow(
                url,
                transport,
                www_authenticate=www_authenticate,
                choose_authorization_server=choose_authorization_server,
            ),
            SimpleIO(transport.post, transport.get),
        )
        return cls._for_plan(plan, url, client_id, client_secret, transport, kwargs)

    def discover(self, *, refresh: bool = False) -> ServerMetadata | None:
        """Fetch (or take from the transport's cache) the issuer's metadata; None without an issuer. Network
        I/O happens here and nowhere else in the configuration: the properties only read its result."""
        self._ensure_open()
        return self._run(self._discover_flow(refresh=refresh))

    # -- the one call -----------------------------------------------------------------------------------------

    def get_token(
        self, *, stale: Token | None = None, interactive: bool | None = None, min_valid: float = 0.0
    ) -> Token:
        """A usable token: fresh, valid for at least ``min_valid`` more seconds, and not ``stale`` (a token a
        resource server just rejected with a 401 ``invalid_token``: it is renewed unless another caller already
        did, so N concurrent 401s cause one renewal, and ``stale`` itself is never returned).
        ``interactive`` overrides the client's setting for a device login when nothing else works.

        A token in its refresh-soon window is returned at once while a background worker renews it."""
        token = self._answer_now(stale, min_valid)
        if token is not None:
            return token
        self._ensure_open()  # closed: the token in memory still serves (a shutdown in progress), nothing more
        token = self._adopt(self._load(), stale, min_valid)
        if token is not None:
            return token
        return self._renew(Renewal(stale, self.interactive if interactive is None else interactive, min_valid))

    def refresh(self) -> Token:
        """Renew now with the refresh token (RFC 6749 §6, C9), through the same single flight, store and lease
        as ``get_token()``; the result is stored. ``LoginRequired`` if there is no refresh token."""
        self._ensure_open()
        return self._renew(Renewal(force="refresh"))

    def fetch_client_credentials(self) -> Token:
        """A new token by the client-credentials grant now (RFC 6749 §4.4, C5), through the same single flight
        and store as ``get_token()``; the result is stored."""
        self._ensure_open()
        return self._renew(Renewal(force="client_credentials"))

    def exchange_token(
        self,
        subject_token: str,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        *,
        actor_token: str | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        scope: ScopeInput = None,
    ) -> Token:
        """One RFC 8693 token exchange now (C30), with this client's endpoint and authentication; the result is
        returned, not cached or stored. The options are ``tokensmith.TokenExchangeGrant``'s (scope None: the
        client's; audience and resource may repeat). For a token that is cached and renewed, configure a client
        with ``grant=TokenExchangeGrant(...)`` instead."""
        self._ensure_open()
        return self._run(
            self._exchange_flow(
                TokenExchangeGrant(
                    subject_token,
                    subject_token_type,
                    actor_token=actor_token,
                    actor_token_type=actor_token_type,
                    requested_token_type=requested_token_type,
                    audience=audience,
                    resource=resource,
                    scope=scope,
                )
            )
        )

    def login(
        self,
        *,
        on_prompt: Callable[[DevicePrompt], None] | None = None,
        on_progress: Callable[[PollProgress], None] | None = None,
        cancel: threading.Event | None = None,
        login_timeout: float | None = None,
        flow: LoginFlow | None = None,
        paste: Callable[[], str] | None = None,
    ) -> Token:
        """An interactive login now, stored like any renewal: ``flow`` (default: the client's ``login_flow``) is
        ``"device"`` (RFC 8628), ``"browser"`` (authorization code + PKCE on a loopback redirect, RFC 7636/8252) or
        ``"auto"`` (the browser where one can be opened, else the device flow when the server offers it, else the
        browser flow in paste mode, which needs ``paste``: a callable returning the address the person pasted).
        ``on_prompt`` receives a ``DevicePrompt`` or a ``BrowserPrompt`` (for a terminal,
        ``tokensmith.cli.presenter.TerminalPresenter().show_prompt`` shows either)."""
        self._ensure_open()
        ui = LoginUI(on_prompt or self.on_prompt, on_progress or self.on_progress, cancel, login_timeout, flow, paste)
        return self._renew(Renewal(interactive=True, force="login", ui=ui))

    # -- renewal: single flight in-process, a lease across processes -------------------------------------------

    def _renew(self, r: Renewal) -> Token:
        force: Force = r.force
        for _ in range(3):  # a follower whose leader's result does not suit it (stale) leads next time
            with self._mutex:
                flight = self._flight
                leader = flight is None
                landed = self._renewed_meanwhile(r) if leader else None
                verdict = self._remembered(r.stale, force) if leader and landed is None else None
                if leader and landed is None and verdict is None:
                    flight = self._flight = _Flight(login=force == "login")
            if landed is not None:
                return landed
            if verdict is not None:
                return self._throttled(verdict)
            assert flight is not None
            if leader:
                return self._lead(flight, r)
            current = self._token
            if force is None and self._still_valid(current, r.stale):
                return current  # someone is renewing; this token still works meanwhile
            result = flight.outcome()
            if (force is None and self._fresh_outcome(result, r.stale)) or (force == "login" and flight.login):
                return result  # a login() during another login: the person logged in once, for both
        raise LoginRequired("could not obtain a token that is not the rejected one")

    def _lead(self, flight: _Flight, r: Renewal) -> Token:
        try:
            token = self._run(self._renew_flow(r))
        except BaseException as error:
            flight.error = error
            raise
        else:
            flight.token = token
            return token
        finally:
            with self._mutex:
                self._flight = None
            flight.done.set()

    def _resave_soon(self) -> None:
        self._retry_save()  # in this thread, at most every RESAVE_INTERVAL

    def _start_background(self) -> None:
        """Start the background worker thread unless one is running or the shared pace says not yet."""
        if self._flight is not None:  # the common case while a renewal runs: no lock needed to see it
            return
        with self._mutex:
            if self._flight is not None or not self._background_due():
                return
            flight = self._flight = _Flight(background=True)
        _renewing.add(self)
        try:
            start_daemon(self._background, flight, name="tokensmith-renewal")
        except RuntimeError:  # no more threads: the callers renew inline later
            with self._mutex:
                self._flight = None
            flight.done.set()
            logger.warning("could not start the background renewal thread", exc_info=True)

    def _background(self, flight: _Flight) -> None:
        # Neither a caller's timeout nor its cancellation reaches this thread: it runs the renewal to its end.
        try:
            self._lead(flight, Renewal(background=True))
        except Exception as error:  # already counted, logged and sent to on_event
            logger.debug("background renewal ended with %s", type(error).__name__)

    def _finish_background(self) -> None:
        """Wait for a background renewal in progress (bounded by its request deadline): once a refresh request
        has gone out, the server may have rotated the refresh token, and only its answer holds the new one."""
        flight = self._flight
        if flight is not None and flight.background:
            flight.done.wait(float(getattr(self.transport, "total_timeout", 40.0)) + 5.0)

    def forget(self) -> None:
        """Drop the token held in memory (after a logout: the store is the caller's business)."""
        with self._mutex:
            self._token = None
            self._unsaved = None

    def close(self) -> None:
        """Start no more background renewals and wait for one in progress, save a token that could not be
        stored earlier (one last try), and close the transport. Afterwards the token in memory is still handed
        out while usable (callers finishing during a shutdown); anything more raises ``ClientClosed``."""
        with self._mutex:  # a worker being started now either is seen below or sees the client closed
            self._closed = True
        self._finish_background()
        if self._unsaved is not None:
            self._next_save_attempt = 0.0
            self._retry_save()
        self.transport.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: Clients whose background worker has run: at interpreter exit, a renewal still in progress is waited for. The
#: worker is a daemon thread (it never keeps a program alive), but a process that exits right after a call in the
#: refresh-soon window (a CLI) would otherwise kill it between a refresh and storing the rotated refresh token.
_renewing: weakref.WeakSet[TokenClient] = weakref.WeakSet()


#: Every client, for a forked child: it inherits their in-flight renewals and mutexes but not the threads behind them.
_clients: weakref.WeakSet[TokenClient] = weakref.WeakSet()


def _forget_flights_after_fork() -> None:  # pragma: no cover - runs in forked children
    # The thread renewing (a background worker, another caller) did not come along: its flight would never land
    # and followers would wait for it forever; a mutex it held would never be released. The child starts afresh.
    for client in list(_clients):
        client._mutex = threading.Lock()
        client._flight = None
    _renewing.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_flights_after_fork)


@atexit.register
def _finish_background_renewals() -> None:  # pragma: no cover - runs at interpreter exit (tested in a subprocess)
    for client in list(_renewing):
        client._finish_background()


def discover(issuer: str, transport: Transport, *, refresh: bool = False) -> ServerMetadata:
    """Fetch and validate the issuer's metadata, cached per process for ``METADATA_TTL``. The cache is keyed by
    everything that changes what would be fetched: the issuer and the transport's session, ``verify``, proxies
    and plain-http policy, so two clients with different trust settings never share a document."""
    return run(cached_discovery(issuer, transport, refresh=refresh), SimpleIO(transport.post, transport.get))


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
ClientStats.__module__ = "tokensmith"
TokenClient.__module__ = "tokensmith"
