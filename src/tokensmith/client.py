"""``TokenClient``: discovery, grants, a token store, and renewal that never herds, never hangs, never loses a token.

``get_token()`` is the one call most code needs. It returns a usable token by trying, in order: the token in
memory, the store, a refresh, a new client-credentials token, and an interactive device login (only when the
caller allows it; otherwise ``LoginRequired``).

How a renewal is coordinated, and why:

- **One renewal per client** (single flight): the first caller that needs the network leads; callers that still
  hold a valid token keep using it, the others wait for the leader's outcome (an event, never a lock held
  across the network).
- **One renewal per store, across processes**: under the store's lock (held for a read and a small write only)
  the leader re-reads the store and, with a store that supports it, writes a short *lease* ("renewing until
  T"). Another process that finds a live lease serves its still-valid token, or waits for the lease holder's
  result, or (for someone else's interactive login, when it may not wait) gets ``LoginInProgress`` at once. A
  rotated refresh token is therefore never spent twice (C26), and no lock is held across a network wait, a
  back-off sleep or a person's login.
- **Never lose a token**: the renewed token is kept in memory before it is stored; if storing fails (disk full,
  read-only home) it is still returned and used, and saved again later. Only the server's own verdict
  (``invalid_grant``) discards a refresh token, and only if the store still holds that very one.
- **Outages**: a transient failure is remembered for a back-off step (MSAL-style): until it passes, callers get
  the still-valid cached token, or the remembered error at once, instead of each making requests of their own.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from ._protocol.client_auth import BasicEncoding, ClientAuth, ClientSecretBasic, ClientSecretPost, NoClientAuth
from ._protocol.discovery import ServerMetadata, metadata_urls, parse_metadata
from ._protocol.messages import HttpRequest
from ._protocol.params import ScopeInput, normalize_scope
from ._protocol.token import GrantType, parse_token_response, token_request
from ._retry import RetryPolicy
from ._transport import DEFAULT_TIMEOUT, Timeout, Transport, Verify
from ._warnings import log_protocol_warnings
from .device import DevicePrompt, PollProgress, device_login
from .exceptions import (
    DiscoveryError,
    InvalidGrant,
    InvalidResponse,
    LoginInProgress,
    LoginRequired,
    OAuthError,
    StoreError,
    TokensmithError,
)
from .stores.base import Lease, LeasingStore, TokenStore, cache_key
from .stores.memory import MemoryStore
from .token import Token

logger = logging.getLogger("tokensmith.client")

Grant = Literal["client_credentials", "device_code"]
_Force = Literal["refresh", "client_credentials", "login"] | None
#: Discovery documents change rarely; refetching them on every process start is what a cache is for.
METADATA_TTL = 3600.0
#: How long another process's interactive login may hold the lease when no ``login_timeout`` is set.
DEFAULT_LOGIN_LEASE = 900.0
#: A token that could not be stored is saved again at most this often (seconds).
RESAVE_INTERVAL = 30.0


@dataclass
class ClientStats:
    """Counts, for tests, benchmarks and monitoring: how often the client went to the network, and why not."""

    token_requests: int = 0
    client_credentials: int = 0
    refreshes: int = 0
    logins: int = 0
    invalid_grants: int = 0
    store_hits: int = 0
    #: Calls answered from a remembered failure instead of a new attempt (outage back-off).
    throttled: int = 0
    #: Times a still-valid token was returned because renewing it failed transiently.
    served_stale: int = 0
    save_failures: int = 0
    #: Times this client waited for another process's renewal (a lease in the store).
    lease_waits: int = 0


class _Flight:
    """One renewal in progress; the other callers of the same client wait for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Token:
        self.done.wait()
        if self.error is not None:
            raise _copy_error(self.error)
        assert self.token is not None
        return self.token


class _Backoff:
    """A remembered transient failure: until ``not_before`` (monotonic), callers do not try again."""

    def __init__(self, retry: RetryPolicy) -> None:
        self._retry = retry
        self.failures = 0
        self.error: BaseException | None = None
        self.not_before = 0.0

    def active(self, now: float) -> BaseException | None:
        return self.error if self.error is not None and now < self.not_before else None

    def record(self, error: TokensmithError, now: float) -> None:
        self.failures += 1
        step = min(self._retry.max_wait, self._retry.backoff * 2.0 ** (self.failures - 1))
        if error.retry_after is not None:
            step = max(step, error.retry_after)
        self.error, self.not_before = error, now + step

    def clear(self) -> None:
        self.failures, self.error, self.not_before = 0, None, 0.0


class TokenClient:
    """An OAuth 2.0 client for one authorization server, one client id and one set of token parameters.

    Give either explicit endpoints (``token_endpoint``, ``device_authorization_endpoint``) or an ``issuer``
    (``TokenClient.from_issuer``) whose metadata is discovered before the first network request (or when you call
    ``discover()``) and cached. Client authentication: ``auth`` as an object (``NoClientAuth``,
    ``ClientSecretBasic``, ``ClientSecretPost``), or ``client_secret`` (Basic with RFC 6749 §2.3.1 encoding, or
    ``client_secret_post`` when the server's metadata only lists that). ``grant`` defaults to client credentials
    for a confidential client and the device flow for a public one. ``timeout`` is the HTTP timeout of each
    request (also its total deadline); ``login_timeout`` bounds an interactive login.
    """

    def __init__(
        self,
        token_endpoint: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        issuer: str | None = None,
        auth: ClientAuth | None = None,
        device_authorization_endpoint: str | None = None,
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
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if token_endpoint is None and issuer is None:
            raise ValueError("give a token_endpoint or an issuer")
        self.transport = transport or Transport(session, timeout=timeout, verify=verify, proxies=proxies)
        for url in (token_endpoint, device_authorization_endpoint, issuer):
            if url is not None:
                self.transport.check(url)  # C24: refuse plain http:// early, before any network access
        self.issuer = issuer
        self._configured_token_endpoint = token_endpoint
        self._configured_device_endpoint = device_authorization_endpoint
        self._metadata: ServerMetadata | None = None
        self.client_id = client_id if client_id is not None else getattr(auth, "client_id", None)
        self._client_secret = client_secret
        self._auth = auth
        self._basic_encoding = basic_encoding
        self.scope = normalize_scope(scope)
        self.audience = audience
        self.resource: tuple[str, ...] = (resource,) if isinstance(resource, str) else tuple(resource or ())
        confidential = client_secret is not None or (auth is not None and not isinstance(auth, NoClientAuth))
        self.grant: Grant = grant or ("client_credentials" if confidential else "device_code")
        self.store: TokenStore = store if store is not None else MemoryStore()
        self.interactive = interactive
        self.on_prompt = on_prompt
        self.on_progress = on_progress
        self.login_timeout = login_timeout
        self.retry = retry or RetryPolicy()
        self.accepted_token_types = tuple(accepted_token_types)
        self.stats = ClientStats()
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._mutex = threading.Lock()  # guards the fields below; never held across I/O
        self._flight: _Flight | None = None
        self._backoff = _Backoff(self.retry)
        self._token: Token | None = None
        self._unsaved: Token | None = None
        self._next_save_attempt = 0.0
        self._warned_store = False
        self._local = threading.local()
        # Keyed by what changes the token; the issuer (not a discovered endpoint) when there is one, so the
        # cached-token path never needs discovery.
        self.cache_key = cache_key(
            issuer=issuer,
            token_endpoint="" if issuer is not None or token_endpoint is None else token_endpoint,
            client_id=self.client_id,
            grant=self.grant,
            scope=self.scope,
            audience=audience,
            resource=self.resource,
        )

    @classmethod
    def from_issuer(cls, issuer: str, client_id: str, client_secret: str | None = None, **kwargs: Any) -> TokenClient:
        """A client configured from the issuer's metadata (OpenID Connect Discovery, then RFC 8414), fetched before
        the first network request, validated (the document's ``issuer`` must be identical, C28) and cached."""
        return cls(issuer=issuer, client_id=client_id, client_secret=client_secret, **kwargs)

    # -- configuration: discovered explicitly, read without I/O ------------------------------------------------

    def discover(self, *, refresh: bool = False) -> ServerMetadata | None:
        """Fetch (or take from the transport's cache) the issuer's metadata; None without an issuer. Network
        I/O happens here and nowhere else in the configuration: the properties below only read its result."""
        if self.issuer is None:
            return None
        if self._metadata is None or refresh:
            self._metadata = discover(self.issuer, self.transport, refresh=refresh)
        return self._metadata

    @property
    def metadata(self) -> ServerMetadata | None:
        """The discovered metadata, or None before ``discover()`` (never fetches)."""
        return self._metadata

    @property
    def token_endpoint(self) -> str | None:
        """The configured or discovered token endpoint; None until ``discover()`` when only an issuer was given."""
        if self._configured_token_endpoint is not None:
            return self._configured_token_endpoint
        return self._metadata.token_endpoint if self._metadata is not None else None

    @property
    def device_authorization_endpoint(self) -> str | None:
        if self._configured_device_endpoint is not None:
            return self._configured_device_endpoint
        return self._metadata.device_authorization_endpoint if self._metadata is not None else None

    @property
    def auth(self) -> ClientAuth:
        """The client authentication to use, from the configuration and (once discovered) the metadata."""
        if self._auth is not None:
            return self._auth
        if self._client_secret is None:
            return NoClientAuth(self.client_id)
        if self.client_id is None:
            raise ValueError("a client secret needs a client_id")
        methods = self._metadata.token_endpoint_auth_methods_supported if self._metadata is not None else ()
        if methods and "client_secret_basic" not in methods and "client_secret_post" in methods:
            return ClientSecretPost(self.client_id, self._client_secret)
        return ClientSecretBasic(self.client_id, self._client_secret, self._basic_encoding)

    def _require_token_endpoint(self) -> str:
        self.discover()
        endpoint = self.token_endpoint
        if endpoint is None:  # pragma: no cover - discover() raises first
            raise DiscoveryError("no token endpoint configured or discovered")
        return endpoint

    def _require_device_endpoint(self) -> str:
        self.discover()
        endpoint = self.device_authorization_endpoint
        if endpoint is None:
            raise DiscoveryError(
                "the server advertises no device_authorization_endpoint (RFC 8628 §4) and none was configured: "
                "pass device_authorization_endpoint=..."
            )
        return endpoint

    # -- the one call -----------------------------------------------------------------------------------------

    def peek(self) -> Token | None:
        """The token in memory if it is fresh; never blocks, never touches the network or the store."""
        token = self._token
        return token if token is not None and token.is_fresh(self._clock()) else None

    def get_token(
        self, *, stale: Token | None = None, interactive: bool | None = None, min_valid: float = 0.0
    ) -> Token:
        """A usable token: fresh, valid for at least ``min_valid`` more seconds, and not ``stale`` (a token a
        resource server just rejected with a 401 ``invalid_token``: it is renewed unless another caller already
        did, so N concurrent 401s cause one renewal, and ``stale`` itself is never returned).
        ``interactive`` overrides the client's setting for a device login when nothing else works."""
        token = self._token
        if self._usable(token, stale, min_valid):
            if self._unsaved is not None:
                self._retry_save()
            return token
        stored = self._load()
        if self._usable(stored, stale, min_valid):
            self.stats.store_hits += 1
            self._token = stored
            return stored
        return self._renew(
            stale=stale, interactive=self.interactive if interactive is None else interactive, min_valid=min_valid
        )

    def refresh(self) -> Token:
        """Renew now with the refresh token (RFC 6749 §6, C9), through the same single flight, store and lease
        as ``get_token()``; the result is stored. ``LoginRequired`` if there is no refresh token."""
        return self._renew(stale=None, interactive=False, min_valid=0.0, force="refresh")

    def fetch_client_credentials(self) -> Token:
        """A new token by the client-credentials grant now (RFC 6749 §4.4, C5), through the same single flight
        and store as ``get_token()``; the result is stored."""
        return self._renew(stale=None, interactive=False, min_valid=0.0, force="client_credentials")

    def login(
        self,
        *,
        on_prompt: Callable[[DevicePrompt], None] | None = None,
        on_progress: Callable[[PollProgress], None] | None = None,
        cancel: threading.Event | None = None,
        login_timeout: float | None = None,
    ) -> Token:
        """An interactive device login (RFC 8628) now, stored like any renewal. The prompt goes to ``on_prompt``
        (for a terminal, e.g. ``tokensmith.cli.presenter.TerminalPresenter().show_prompt``)."""
        ui = _LoginUI(on_prompt or self.on_prompt, on_progress or self.on_progress, cancel, login_timeout)
        return self._renew(stale=None, interactive=True, min_valid=0.0, force="login", ui=ui)

    # -- freshness ---------------------------------------------------------------------------------------------

    def _usable(self, token: Token | None, stale: Token | None, min_valid: float = 0.0) -> TypeGuard[Token]:
        """Fresh (before its renewal point), valid ``min_valid`` seconds more, and not the rejected token."""
        if token is None or (stale is not None and token.access_token == stale.access_token):
            return False
        now = self._clock()
        if not token.is_fresh(now):
            return False
        return min_valid <= 0 or token.expires_at is None or token.expires_at - now >= min_valid

    def _still_valid(self, token: Token | None, stale: Token | None) -> TypeGuard[Token]:
        """Not expired yet and not the rejected token: good enough to serve while a renewal is pending or failing."""
        return (
            token is not None
            and not token.is_expired(self._clock())
            and (stale is None or token.access_token != stale.access_token)
        )

    # -- renewal: single flight in-process, a lease across processes -------------------------------------------

    def _renew(
        self,
        *,
        stale: Token | None,
        interactive: bool,
        min_valid: float,
        force: _Force = None,
        ui: _LoginUI | None = None,
    ) -> Token:
        for _ in range(3):  # a follower whose leader's result does not suit it (stale) leads next time
            with self._mutex:
                flight = self._flight
                leader = flight is None
                if leader:
                    remembered = self._backoff.active(self._monotonic())
                    if remembered is not None and force is None:
                        current = self._token
                        self.stats.throttled += 1
                        if self._still_valid(current, stale):
                            self.stats.served_stale += 1
                            return current
                        raise _copy_error(remembered)
                    flight = self._flight = _Flight()
            assert flight is not None
            if leader:
                return self._lead(flight, stale, interactive, min_valid, force, ui)
            current = self._token
            if force is None and self._still_valid(current, stale):
                return current  # someone is renewing; this token still works meanwhile
            result = flight.outcome()
            if force is None and self._still_valid(result, stale):
                return result
        raise LoginRequired("could not obtain a token that is not the rejected one")

    def _lead(
        self,
        flight: _Flight,
        stale: Token | None,
        interactive: bool,
        min_valid: float,
        force: _Force,
        ui: _LoginUI | None,
    ) -> Token:
        try:
            token = self._renew_as_leader(stale, interactive, min_valid, force, ui)
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

    def _renew_as_leader(
        self, stale: Token | None, interactive: bool, min_valid: float, force: _Force, ui: _LoginUI | None
    ) -> Token:
        if not isinstance(self.store, LeasingStore):
            # A store without leases (a custom one): the only cross-process coordination it offers is its lock,
            # so it is held across this renewal, as before leases existed.
            with self.store.lock(self.cache_key):
                self._local.holds_store_lock = True
                try:
                    return self._renew_with_lease(stale, interactive, min_valid, force, ui)
                finally:
                    self._local.holds_store_lock = False
        return self._renew_with_lease(stale, interactive, min_valid, force, ui)

    def _store_lock(self) -> AbstractContextManager[object]:
        """The store's lock, unless this thread already holds it (the lease-less path)."""
        if getattr(self._local, "holds_store_lock", False):
            return contextlib.nullcontext()
        return self.store.lock(self.cache_key)

    def _renew_with_lease(
        self, stale: Token | None, interactive: bool, min_valid: float, force: _Force, ui: _LoginUI | None
    ) -> Token:
        lease = _Lease(self, "login" if force == "login" else "renew")
        candidate = self._token
        renewed: Token | None = None
        try:
            self.discover()  # before any lock: a slow issuer never holds anyone up
            found, candidate = self._coordinate(lease, stale, interactive, min_valid, force)
            if found is not None:
                return found
            renewed = self._obtain(candidate, stale, interactive, force, lease, ui)
        except TokensmithError as error:
            if not error.transient:
                raise
            with self._mutex:
                self._backoff.record(error, self._monotonic())
            if force is None and self._still_valid(candidate, stale):
                self.stats.served_stale += 1
                logger.warning(
                    "renewing the token failed (%s); the current access token is still valid, using it",
                    type(error).__name__,
                )
                return candidate
            raise
        finally:
            if renewed is None:
                lease.release()
        with self._mutex:
            self._backoff.clear()
        self._keep(renewed, lease)  # the lease goes only once the new token is stored (or storing failed)
        lease.release()
        return renewed

    def _coordinate(
        self, lease: _Lease, stale: Token | None, interactive: bool, min_valid: float, force: _Force
    ) -> tuple[Token | None, Token | None]:
        """Under the store lock (briefly): re-read the store and claim the lease. Returns (a usable token found
        in the store, None) or (None, the best token to renew from). Waits, without any lock, while another
        process holds a live lease and this one has nothing valid to serve."""
        for _ in range(10_000):  # bounded: each pass either returns or waits on a lease that expires
            try:
                with self._store_lock():
                    stored = self.store.load(self.cache_key)
                    if force is None and self._usable(stored, stale, min_valid):
                        self.stats.store_hits += 1
                        self._token = stored
                        return stored, None
                    candidate = _newest(stored, self._token)
                    holder = lease.claim()
            except StoreError as error:
                self._store_trouble("coordinate with other processes through the store", error)
                return None, _newest(self._load(), self._token)
            if holder is None:
                return None, candidate
            # Another process is renewing (or logging in) for this key.
            if force is None and self._still_valid(candidate, stale):
                return candidate, None
            if holder.kind == "login" and not interactive:
                raise LoginInProgress(
                    f"another tokensmith process (pid {holder.pid} on {holder.host}) is running an interactive "
                    f"login for this identity; finish it there, or retry after {time.ctime(holder.expires_at)}",
                    pid=holder.pid,
                    expires_at=holder.expires_at,
                )
            self.stats.lease_waits += 1
            logger.info("waiting for another process's %s (pid %d) to finish", holder.kind, holder.pid)
            self._sleep(0.05 if holder.kind == "renew" else 0.5)
        raise LoginRequired("gave up waiting for another process's renewal")  # pragma: no cover

    def _obtain(
        self,
        candidate: Token | None,
        stale: Token | None,
        interactive: bool,
        force: _Force,
        lease: _Lease,
        ui: _LoginUI | None,
    ) -> Token:
        """The network part: refresh, client credentials or a login, as the situation and ``force`` ask."""
        if force == "login":
            return self._device_login(lease, ui)
        if force == "client_credentials":
            return self._request_client_credentials()
        refresh_token = candidate.refresh_token if candidate is not None else None
        if refresh_token:
            try:
                return self._request_refresh(refresh_token)
            except InvalidGrant as dead:
                # The refresh token is dead. Forget it only if the store still holds that very one
                # (compare-and-delete): a sibling may have rotated it a moment ago.
                self.stats.invalid_grants += 1
                self._forget(refresh_token)
                logger.info("refresh token rejected (invalid_grant); a new token is needed")
                if force == "refresh":
                    raise LoginRequired(
                        "the refresh token was rejected (invalid_grant): log in again (client.login())"
                    ) from dead
                return self._without_refresh_token(interactive, lease, ui, dead)
        if force == "refresh":
            raise LoginRequired("no refresh token to renew with: log in first (client.login())")
        return self._without_refresh_token(interactive, lease, ui, None)

    def _without_refresh_token(
        self, interactive: bool, lease: _Lease, ui: _LoginUI | None, cause: InvalidGrant | None
    ) -> Token:
        if self.grant == "client_credentials":
            return self._request_client_credentials()
        if interactive:
            return self._device_login(lease, ui)
        reason = "the refresh token was rejected (invalid_grant)" if cause else "no valid token is stored"
        raise LoginRequired(
            f"{reason}, and an interactive login was not allowed: log in first (client.login(), or "
            "get_token(interactive=True))"
        ) from cause

    # -- memory and store ---------------------------------------------------------------------------------------

    def _load(self) -> Token | None:
        try:
            return self.store.load(self.cache_key)
        except StoreError as error:
            self._store_trouble("read the stored token", error)
            return None

    def _keep(self, token: Token, lease: _Lease) -> None:
        """Memory first, then the store. A failed save keeps the token (returned and used) and retries later."""
        self._token = token
        try:
            with self._store_lock():
                self.store.save(self.cache_key, token)
                lease.release()
        except StoreError as error:
            self.stats.save_failures += 1
            self._unsaved = token
            self._next_save_attempt = self._monotonic() + RESAVE_INTERVAL
            logger.warning(
                "could not store the renewed token (%s); keeping it in memory and saving it again later", error
            )
        else:
            self._unsaved = None

    def _retry_save(self) -> None:
        token = self._unsaved
        if token is None or self._monotonic() < self._next_save_attempt:
            return
        self._next_save_attempt = self._monotonic() + RESAVE_INTERVAL
        try:
            with self._store_lock():
                stored = self.store.load(self.cache_key)
                if stored is None or _newest(stored, token) is token:
                    self.store.save(self.cache_key, token)
        except StoreError as error:
            logger.debug("saving the renewed token still fails: %s", error)
            return
        self._unsaved = None
        logger.info("the renewed token that could not be stored earlier is stored now")

    def _forget(self, refresh_token: str) -> None:
        self._token = None
        self._unsaved = None
        try:
            self.store.delete(self.cache_key, refresh_token=refresh_token)
        except StoreError as error:
            self._store_trouble("remove the rejected refresh token", error)

    def _store_trouble(self, what: str, error: StoreError) -> None:
        log = logger.debug if self._warned_store else logger.warning
        self._warned_store = True
        log("could not %s (%s); going on without it", what, error)

    # -- grants -----------------------------------------------------------------------------------------------

    def _request_client_credentials(self) -> Token:
        """One client-credentials request (retried on transient failures: safe to repeat). Bypasses the cache."""
        request = token_request(
            self._require_token_endpoint(),
            GrantType.CLIENT_CREDS,
            self.auth,
            scope=self.scope,
            params=[("audience", self.audience), ("resource", self.resource)],
        )
        token = self._post_token(request, replay_safe=True)
        self.stats.client_credentials += 1
        logger.info("client-credentials token obtained, expires in %s s", _expires_in(token, self._clock()))
        return token

    def _request_refresh(self, refresh_token: str) -> Token:
        """One refresh (retried only when the server cannot have seen it, see ``_retry``). Bypasses the cache.
        Keeps the old refresh token when the server returns none (C9)."""
        request = token_request(
            self._require_token_endpoint(),
            GrantType.REFRESH_TOKEN,
            self.auth,
            params=[("refresh_token", refresh_token)],
        )
        renewed = self._post_token(request, replay_safe=False, previous_refresh_token=refresh_token)
        self.stats.refreshes += 1
        logger.info(
            "token refreshed, expires in %s s; refresh token %s",
            _expires_in(renewed, self._clock()),
            "rotated" if renewed.refresh_token != refresh_token else "kept",
        )
        return renewed

    def _post_token(
        self, request: HttpRequest, *, replay_safe: bool, previous_refresh_token: str | None = None
    ) -> Token:
        """Send a token request under the retry policy and turn the answer into a ``Token``."""

        def call() -> Token:
            self.stats.token_requests += 1
            response = parse_token_response(
                self.transport.post(request), request.secrets, accepted_token_types=self.accepted_token_types
            )
            log_protocol_warnings(response.warnings)
            return Token.from_response(response, previous_refresh_token=previous_refresh_token)

        return self.retry.run(call, replay_safe=replay_safe, sleep=self._sleep)

    def _device_login(self, lease: _Lease, ui: _LoginUI | None) -> Token:
        ui = ui or _LoginUI(self.on_prompt, self.on_progress, None, None)
        if ui.on_prompt is None:
            raise ValueError("a device login needs on_prompt to show the user code and link")
        login_timeout = ui.login_timeout if ui.login_timeout is not None else self.login_timeout
        lease.upgrade("login", login_timeout or DEFAULT_LOGIN_LEASE)
        token = device_login(
            self._require_device_endpoint(),
            self._require_token_endpoint(),
            self.auth,
            on_prompt=ui.on_prompt,
            scope=self.scope,
            audience=self.audience,
            resource=self.resource or None,
            on_progress=ui.on_progress,
            cancel=ui.cancel,
            login_timeout=login_timeout,
            transport=self.transport,
            accepted_token_types=self.accepted_token_types,
        )
        self.stats.logins += 1
        return token

    def forget(self) -> None:
        """Drop the token held in memory (after a logout: the store is the caller's business)."""
        with self._mutex:
            self._token = None
            self._unsaved = None

    def close(self) -> None:
        """Save a token that could not be stored earlier (one last try) and close the transport."""
        if self._unsaved is not None:
            self._next_save_attempt = 0.0
            self._retry_save()
        self.transport.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.issuer or self._configured_token_endpoint
        return f"TokenClient({where!r}, client_id={self.client_id!r}, grant={self.grant!r})"


@dataclass(frozen=True)
class _LoginUI:
    on_prompt: Callable[[DevicePrompt], None] | None
    on_progress: Callable[[PollProgress], None] | None
    cancel: threading.Event | None
    login_timeout: float | None


class _Lease:
    """This client's claim on a store key while it renews, for stores that support leases (``claim``); a
    no-op for stores that do not (they get the lock-and-re-read coordination only)."""

    def __init__(self, client: TokenClient, kind: str) -> None:
        self._client = client
        self._store = client.store
        self.kind = kind
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.held = False

    def _ttl(self) -> float:
        if self.kind == "login":
            return self._client.login_timeout or DEFAULT_LOGIN_LEASE
        # The longest a renewal can take: every attempt to its total deadline, plus the back-off waits.
        retry, total = self._client.retry, float(getattr(self._client.transport, "total_timeout", 40.0))
        waits = sum(min(retry.max_wait, retry.backoff * 2.0**n) for n in range(retry.attempts - 1))
        return retry.attempts * total + waits + 5.0

    def claim(self, ttl: float | None = None) -> Lease | None:
        """Claim (or renew) the lease; returns the *other* holder's live lease, or None if ours now."""
        if not isinstance(self._store, LeasingStore):
            return None
        current = self._store.claim(self._client.cache_key, self.owner, self.kind, self._ttl() if ttl is None else ttl)
        if current.owner == self.owner:
            self.held = True
            return None
        return current

    def upgrade(self, kind: str, ttl: float) -> None:
        """Turn a renewal lease into a login lease (others then know a person is involved)."""
        self.kind = kind
        if self.held:
            try:
                self.claim(ttl)
            except StoreError as error:
                self._client._store_trouble("mark the login in the store", error)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if isinstance(self._store, LeasingStore):
            try:
                self._store.release(self._client.cache_key, self.owner)
            except StoreError as error:
                self._client._store_trouble("release the renewal lease", error)


def _newest(a: Token | None, b: Token | None) -> Token | None:
    """The more recently issued of two tokens (memory may be ahead of a store that failed to save)."""
    if a is None or b is None:
        return a or b
    return b if (b.issued_at or 0.0) > (a.issued_at or 0.0) else a


def _copy_error(error: BaseException) -> BaseException:
    """A fresh instance for each caller that shares one failure (re-raising one instance from several threads
    would tangle their tracebacks); the original is chained as the cause."""
    try:
        duplicate = copy.copy(error)
    except Exception:  # an exception that cannot be copied is re-raised as is
        return error
    duplicate.__cause__ = error
    duplicate.__traceback__ = None
    return duplicate


# -- discovery ---------------------------------------------------------------------------------------------------

_discovery_lock = threading.Lock()
#: Metadata per session (weakly: it goes with the session), then per (issuer, verify, proxies, http policy).
_discovery_cache: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str, bool], tuple[ServerMetadata, float]]] = (
    weakref.WeakKeyDictionary()
)


def discover(issuer: str, transport: Transport, *, refresh: bool = False) -> ServerMetadata:
    """Fetch and validate the issuer's metadata, cached per process for ``METADATA_TTL``. The cache is keyed by
    everything that changes what would be fetched: the issuer and the transport's session, ``verify``, proxies
    and plain-http policy, so two clients with different trust settings never share a document."""
    key = (
        issuer,
        repr(transport.verify),
        repr(sorted((transport.proxies or {}).items())),
        transport.allow_insecure_http,
    )
    now = time.monotonic()
    with _discovery_lock:
        try:
            per_session = _discovery_cache.setdefault(transport.session, {})
        except TypeError:  # a session object that cannot be weakly referenced: no caching
            per_session = {}
        cached = per_session.get(key)
    if cached is not None and not refresh and now - cached[1] < METADATA_TTL:
        return cached[0]
    errors: list[str] = []
    for url in metadata_urls(issuer):
        try:
            metadata = parse_metadata(transport.get(url), issuer, allow_insecure=transport.allow_insecure_http)
        except (InvalidResponse, OAuthError) as error:
            if error.status_code in (404, 405, 400):
                errors.append(f"{url}: HTTP {error.status_code}")
                continue
            failure = DiscoveryError(f"fetching {url} failed: {error}")
            failure.transient = error.transient  # a 502 from the issuer is worth retrying later
            raise failure from error
        with _discovery_lock:
            per_session[key] = (metadata, now)
        return metadata
    raise DiscoveryError(
        f"no authorization server metadata for {issuer!r} ({'; '.join(errors)}); check the issuer URL, or give "
        "token_endpoint= (and device_authorization_endpoint=) explicitly"
    )


def _expires_in(token: Token, now: float) -> str:
    return "?" if token.expires_at is None else f"{token.expires_at - now:.0f}"


__all__ = ["ClientStats", "TokenClient", "discover"]


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
ClientStats.__module__ = "tokensmith"
TokenClient.__module__ = "tokensmith"
