"""The renewal engine both clients share: configuration, the renewal rules, and the renewal itself as a flow.

``TokenClient`` (threads, ``requests``) and ``AsyncTokenClient`` (asyncio, ``httpx``) are thin drivers around
``ClientCore``: they own the single flight (an event or a task), start the background worker (a thread or a
task) and run the flows below with their runner (see ``tokensmith._flow``). Everything else is decided here,
once: when a token is fresh, may be served while it is renewed, or must be renewed first; the remembered-failure
back-off; how the store and its lease coordinate processes; which grant renews; what is kept when a step fails;
and the events operators see. Store calls are ``Blocking`` effects (run off the event loop by the async driver), and
so is building a request with a user's callable that may block (a KMS signer, a grant's credential source).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypeGuard, TypeVar

from ._discovery import cached_discovery
from ._dpop_binding import DPoPBinding
from ._flow import Blocking, Cancel, Flow, Post, Sleep, build, fresh_request
from ._protocol.authorization import check_authorization_endpoint
from ._protocol.client_auth import (
    BasicEncoding,
    ClientAuth,
    ClientSecretBasic,
    ClientSecretPost,
    NoClientAuth,
    may_block,
)
from ._protocol.discovery import ServerMetadata
from ._protocol.messages import HttpRequest
from ._protocol.params import ScopeInput, normalize_scope
from ._protocol.renewal import DEFAULT_POLICY, RenewalPolicy, RenewalState, backoff_step, deadlines
from ._protocol.token import GrantType, TokenResponse, parse_token_response, token_request
from ._retry import NO_RETRY, RetryPolicy
from ._warnings import log_protocol_warnings
from .device import DevicePrompt, PollProgress, device_login_flow
from .events import RenewalEvent, RenewalFailed, RenewalStarted, RenewalSucceeded, ServedStale
from .exceptions import (
    ClientClosed,
    ConfigurationError,
    DiscoveryError,
    InvalidGrant,
    LoginInProgress,
    LoginRequired,
    StoreError,
    TokensmithError,
)
from .grants import JWTBearerGrant, TokenExchangeGrant
from .stores.base import Lease as StoreLease
from .stores.base import LeasingStore, TokenStore, cache_key
from .stores.memory import MemoryStore
from .token import Token

logger = logging.getLogger("tokensmith.client")

#: A grant by name, or an extension grant object (``tokensmith.JWTBearerGrant``, ``tokensmith.TokenExchangeGrant``).
Grant = Literal["client_credentials", "device_code"] | JWTBearerGrant | TokenExchangeGrant
Force = Literal["refresh", "client_credentials", "login"] | None
#: How long another process's interactive login may hold the lease when no ``login_timeout`` is set.
DEFAULT_LOGIN_LEASE = 900.0
#: A token that could not be stored is saved again at most this often (seconds).
RESAVE_INTERVAL = 30.0

_Client = TypeVar("_Client", bound="ClientCore")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._protocol.resource_metadata import ResourceMetadata
    from .dpop import DPoPKey, DPoPSession
    from .resource import ResourcePlan


@dataclass
class ClientStats:
    """Counts, for tests, benchmarks and monitoring: how often the client went to the network, and why not.
    Alert on ``consecutive_failures`` (or ``renewals_failed`` growing) before the served token expires."""

    #: Requests sent to the token endpoint: every attempt, every device poll, a DPoP nonce retry, a code exchange.
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
    #: Renewals that went to the network, and how they ended (see ``tokensmith.RenewalStarted`` etc.).
    renewals_started: int = 0
    renewals_succeeded: int = 0
    renewals_failed: int = 0
    #: Renewals started by the background worker (no caller waiting).
    background_renewals: int = 0
    #: Failed renewals since the last success (0 when healthy).
    consecutive_failures: int = 0


LoginFlow = Literal["device", "browser", "auto"]


@dataclass(frozen=True)
class LoginUI:
    #: Receives a ``DevicePrompt`` (device flow) or a ``BrowserPrompt`` (browser flow): what to show the person.
    on_prompt: Callable[[Any], Any] | None
    on_progress: Callable[[PollProgress], Any] | None
    cancel: Cancel | None
    login_timeout: float | None
    #: None: the client's ``login_flow``.
    flow: LoginFlow | None = None
    #: Paste mode for a browser login where no browser can be opened: returns the address the person pasted.
    paste: Callable[[], str] | None = None


@dataclass(frozen=True)
class Renewal:
    """What one renewal is asked to do."""

    stale: Token | None = None
    interactive: bool = False
    min_valid: float = 0.0
    force: Force = None
    ui: LoginUI | None = None
    #: Run by the background worker: one attempt per back-off step, nobody waiting.
    background: bool = False


class Transportish(Protocol):
    """What the engine needs of a transport (sync or async): the endpoint policy and the cache-key facts."""

    verify: Any
    proxies: Any
    allow_insecure_http: bool
    total_timeout: float

    @property
    def pool(self) -> Any: ...

    def check(self, url: str) -> str: ...


class Backoff:
    """The remembered failure and the pace of attempts, shared by every caller of one client.

    After a failed renewal no new attempt starts before ``not_before`` (monotonic): the step is capped,
    jittered exponential back-off honouring ``Retry-After``, never shorter than the policy's minimum gap. A
    transient failure is also *remembered*: until the step passes, callers get the still-valid token, or this
    error at once, instead of each making requests of their own. Nothing is sticky: once the step passes, the
    next caller (or the background worker) tries again."""

    def __init__(self, retry: RetryPolicy, policy: RenewalPolicy, draw: Callable[[], float]) -> None:
        self._retry = retry
        self._policy = policy
        self._draw = draw
        self.failures = 0
        self.error: BaseException | None = None
        self.not_before = 0.0

    def active(self, now: float) -> BaseException | None:
        return self.error if self.error is not None and now < self.not_before else None

    def ready(self, now: float) -> bool:
        return not now < self.not_before

    def record(self, error: Exception, now: float) -> float:
        """Count a failure and return the step until the next attempt. Only transient errors are remembered
        (served to callers meanwhile); a rejection, or an error that is not the library's (a bug in a custom
        store, transport or credential callable), only paces the background worker."""
        self.failures += 1
        transient = isinstance(error, TokensmithError) and error.transient
        step = backoff_step(
            self.failures,
            base=self._retry.backoff,
            cap=self._retry.max_wait,
            retry_after=error.retry_after if isinstance(error, TokensmithError) else None,
            min_gap=self._policy.min_gap,
            draw=self._draw(),
        )
        self.error = error if transient else None
        self.not_before = now + step
        return step

    def pause(self, now: float, seconds: float) -> None:
        """No attempt before ``now + seconds`` (another process is renewing), without counting a failure."""
        self.not_before = max(self.not_before, now + seconds)

    def clear(self) -> None:
        self.failures, self.error, self.not_before = 0, None, 0.0


class Lease:
    """This client's claim on a store key while it renews, for stores that support leases (``claim``); a
    no-op for stores that do not (they get the lock-and-re-read coordination only: their lock is held across
    the renewal, see ``hold_store_lock``). Every method does store I/O: run them as ``Blocking`` effects."""

    def __init__(self, client: ClientCore, kind: str) -> None:
        self._client = client
        self._store = client.store
        self.kind = kind
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.held = False
        self._store_lock: AbstractContextManager[object] | None = None

    def _ttl(self) -> float:
        if self.kind == "login":
            return self._client.login_timeout or DEFAULT_LOGIN_LEASE
        # The longest a renewal can take: every attempt to its total deadline, plus the back-off waits.
        retry, total = self._client.retry, float(getattr(self._client.transport, "total_timeout", 40.0))
        waits = sum(min(retry.max_wait, retry.backoff * 2.0**n) for n in range(retry.attempts - 1))
        return retry.attempts * total + waits + 5.0

    def claim(self, ttl: float | None = None) -> StoreLease | None:
        """Claim (or renew) the lease; returns the *other* holder's live lease, or None if ours now."""
        if not isinstance(self._store, LeasingStore):
            return None
        current = self._store.claim(self._client.cache_key, self.owner, self.kind, self._ttl() if ttl is None else ttl)
        if current.owner == self.owner:
            self.held = True
            return None
        return current

    def extend(self, ttl: float) -> None:
        """Re-claim for ``ttl`` (a login lease: others then know a person is involved)."""
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

    def store_lock(self) -> AbstractContextManager[object]:
        """The store's lock, unless this renewal already holds it (the lease-less path)."""
        if self._store_lock is not None:
            return contextlib.nullcontext()
        return self._store.lock(self._client.cache_key)

    @property
    def holds_store_lock(self) -> bool:
        return self._store_lock is not None

    def hold_store_lock(self) -> None:
        lock = self._store.lock(self._client.cache_key)
        lock.__enter__()
        self._store_lock = lock

    def drop_store_lock(self) -> None:
        lock, self._store_lock = self._store_lock, None
        if lock is not None:
            lock.__exit__(None, None, None)


class ClientCore(DPoPBinding):
    """Configuration, state and the renewal flows of one client (see the module docstring). Not used alone."""

    transport: Transportish
    #: Paste mode for a browser login when no browser can be opened and no device flow is offered (``auto``):
    #: a callable returning the address the person pasted. Set it on a client used from a terminal.
    paste: Callable[[], str] | None = None
    #: Whether a browser login opens the browser itself: None (default) where one can be opened (a local display,
    #: not over SSH; ``auto`` falls back to the device flow or paste mode elsewhere), False never (the link is only
    #: shown, as ``tokensmith login --no-browser`` wants; ``auto`` treats it as "no browser here"), True always.
    open_browser: bool | None = None

    def __init__(
        self,
        token_endpoint: str | None,
        client_id: str | None,
        client_secret: str | None,
        *,
        transport: Transportish,
        issuer: str | None,
        auth: ClientAuth | None,
        device_authorization_endpoint: str | None,
        authorization_endpoint: str | None,
        redirect_uri: str | None,
        login_flow: LoginFlow,
        scope: ScopeInput,
        audience: str | None,
        resource: str | Iterable[str] | None,
        grant: Grant | None,
        store: TokenStore | None,
        interactive: bool,
        on_prompt: Callable[[DevicePrompt], Any] | None,
        on_progress: Callable[[PollProgress], Any] | None,
        login_timeout: float | None,
        basic_encoding: BasicEncoding,
        retry: RetryPolicy | None,
        accepted_token_types: Iterable[str],
        renewal: RenewalPolicy | None,
        background_refresh: bool,
        on_event: Callable[[RenewalEvent], None] | None,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        rng: Callable[[], float],
        private_key: Any = None,
        dpop: bool | DPoPKey | None = None,
    ) -> None:
        if token_endpoint is None and issuer is None:
            raise ValueError("give a token_endpoint or an issuer")
        self.transport = transport
        for url in (token_endpoint, device_authorization_endpoint, issuer):
            if url is not None:
                self.transport.check(url)  # C24: refuse plain http:// early, before any network access
        if authorization_endpoint is not None:
            check_authorization_endpoint(authorization_endpoint)  # https or loopback, no opt-out: it takes passwords
        if login_flow not in ("device", "browser", "auto"):
            raise ValueError(f"login_flow must be 'device', 'browser' or 'auto', not {login_flow!r}")
        self.issuer = issuer
        self._configured_token_endpoint = token_endpoint
        self._configured_device_endpoint = device_authorization_endpoint
        self._configured_authorization_endpoint = authorization_endpoint
        self.redirect_uri = redirect_uri
        self.login_flow: LoginFlow = login_flow
        self._metadata: ServerMetadata | None = None
        self.client_id = client_id if client_id is not None else getattr(auth, "client_id", None)
        self._client_secret = client_secret
        bind = getattr(auth, "with_issuer", None)
        if issuer is not None and callable(bind):
            auth = bind(issuer)  # a JWT assertion for audience="issuer" (C31)
        self._auth = auth
        self._private_key = private_key
        self._chosen_auth: tuple[tuple[str, ...], ClientAuth] | None = None
        self._basic_encoding = basic_encoding
        self.scope = normalize_scope(scope)
        self.audience = audience
        self.resource: tuple[str, ...] = (resource,) if isinstance(resource, str) else tuple(resource or ())
        confidential = (
            client_secret is not None
            or private_key is not None
            or (auth is not None and not isinstance(auth, NoClientAuth))
        )
        self.grant: Grant = grant or ("client_credentials" if confidential else "device_code")
        self.store: TokenStore = store if store is not None else MemoryStore()
        if (
            store is not None
            and not isinstance(self.grant, str)
            and ("callable_unnamed", "1") in self.grant.cache_material()
        ):
            # A callable's subject cannot be looked into: in a store other clients may share, two subjects would
            # share one cache entry, and one would be handed the other's token.
            raise ConfigurationError(
                f"{type(self.grant).__name__} with a callable subject token or assertion needs cache_id= (naming "
                "the subject) when a store is given, so tokens of different subjects never share a cache entry"
            )
        self.interactive = interactive
        self.on_prompt = on_prompt
        self.on_progress = on_progress
        self.login_timeout = login_timeout
        self.retry = retry or RetryPolicy()
        self._dpop: DPoPSession | None = None
        #: The protected resource metadata (RFC 9728) this client was configured from (``for_resource``), if any.
        self.resource_metadata: ResourceMetadata | None = None
        #: Why the stored token was set aside (a DPoP key problem), for the LoginRequired that may follow.
        self._key_problem: str | None = None
        self._warned_key_problem = False
        #: A key made here that the store refused (a full disk): saved before any token bound to it is.
        self._key_unsaved = False
        if dpop is not None and dpop is not False:
            from .dpop import DPoPKey, DPoPSession  # loaded (and PyJWT looked for) only when DPoP is used

            if dpop is True:
                self._dpop = DPoPSession(None, generated=True, clock=clock)
            elif isinstance(dpop, DPoPKey):
                self._dpop = DPoPSession(dpop, generated=False, clock=clock)
            else:
                raise TypeError("dpop must be True (a key made and stored by the client) or a tokensmith.DPoPKey")
        # RFC 9449 §5 / C7: a DPoP token is accepted only when proofs were sent for it; then it is used as DPoP
        # (never as a Bearer token). A Bearer token the server chose to issue despite the proof is used as Bearer.
        types = [t for t in accepted_token_types if t.lower() != "dpop"]
        self.accepted_token_types = (*types, "DPoP") if self._dpop is not None else tuple(types)
        self.renewal = renewal or DEFAULT_POLICY
        self.background_refresh = background_refresh
        self.on_event = on_event
        self.stats = ClientStats()
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng
        self._mutex = threading.Lock()  # guards the flight and the back-off; never held across I/O or a callback
        self._backoff = Backoff(self.retry, self.renewal, rng)
        self._stale_reported = 0  # the failure count at the last ServedStale event (one event per failure)
        self._token: Token | None = None
        self._unsaved: Token | None = None
        self._next_save_attempt = 0.0
        self._warned_store = False
        self._closed = False
        # Keyed by what changes the token; the issuer (not a discovered endpoint) when there is one, so the
        # cached-token path never needs discovery.
        self.cache_key = cache_key(
            issuer=issuer,
            token_endpoint="" if issuer is not None or token_endpoint is None else token_endpoint,
            client_id=self.client_id,
            grant=self.grant if isinstance(self.grant, str) else self.grant.grant_type,
            scope=self.scope,
            audience=audience,
            resource=self.resource,
            extra=(
                *(() if isinstance(self.grant, str) else self.grant.cache_material()),
                # A DPoP-bound token and a Bearer one are different tokens (RFC 9449 §5): kept apart, a client
                # with DPoP and one without (the command line) never replace each other's token in a shared store.
                *((("binding", "dpop"),) if self._dpop is not None else ()),
            ),
        )

    @classmethod
    def from_issuer(
        cls: type[_Client], issuer: str, client_id: str, client_secret: str | None = None, **kwargs: Any
    ) -> _Client:
        """A client configured from the issuer's metadata (OpenID Connect Discovery, then RFC 8414), fetched before
        the first network request, validated (the document's ``issuer`` must be identical, C28) and cached."""
        return cls(issuer=issuer, client_id=client_id, client_secret=client_secret, **kwargs)

    @classmethod
    def _for_plan(
        cls: type[_Client],
        plan: ResourcePlan,
        url: str,
        client_id: str,
        client_secret: str | None,
        transport: Any,
        kwargs: dict[str, Any],
    ) -> _Client:
        """``for_resource``'s client, once both drivers have fetched the plan: the constructor's arguments win over
        discovery, and the validated documents are kept (no second fetch)."""
        from .resource import client_settings

        settings = client_settings(plan, url, kwargs)
        client = cls(
            issuer=plan.server.issuer, client_id=client_id, client_secret=client_secret, transport=transport, **settings
        )
        client._metadata = plan.server
        client.resource_metadata = plan.resource
        return client

    # -- configuration: discovered explicitly, read without I/O ------------------------------------------------

    @property
    def metadata(self) -> ServerMetadata | None:
        """The discovered metadata, or None before ``discover()`` (never fetches)."""
        return self._metadata

    def _endpoint(self, configured: str | None, discovered: Callable[[ServerMetadata], str | None]) -> str | None:
        """A configured endpoint, else the discovered one, else None (not discovered yet)."""
        if configured is not None:
            return configured
        return discovered(self._metadata) if self._metadata is not None else None

    @property
    def token_endpoint(self) -> str | None:
        """The configured or discovered token endpoint; None until ``discover()`` when only an issuer was given."""
        return self._endpoint(self._configured_token_endpoint, lambda m: m.token_endpoint)

    @property
    def device_authorization_endpoint(self) -> str | None:
        return self._endpoint(self._configured_device_endpoint, lambda m: m.device_authorization_endpoint)

    @property
    def authorization_endpoint(self) -> str | None:
        """The configured or discovered authorization endpoint (browser logins); None until known."""
        return self._endpoint(self._configured_authorization_endpoint, lambda m: m.authorization_endpoint)

    @property
    def auth(self) -> ClientAuth:
        """The client authentication to use, from the configuration and (once discovered) the metadata."""
        if self._auth is not None:
            return self._auth
        if self._client_secret is None and self._private_key is None:
            return NoClientAuth(self.client_id)
        if self.client_id is None:
            raise ValueError("a client secret or private key needs a client_id")
        methods = tuple(self._metadata.token_endpoint_auth_methods_supported if self._metadata is not None else ())
        chosen = self._chosen_auth
        if chosen is None or chosen[0] != methods:  # built once per metadata: a private key is parsed once
            chosen = self._chosen_auth = (methods, self._choose_auth(self.client_id, methods))
        return chosen[1]

    def _choose_auth(self, client_id: str, methods: tuple[str, ...]) -> ClientAuth:
        """From the configuration and the metadata's ``token_endpoint_auth_methods_supported`` (RFC 8414 §2;
        absent means ``client_secret_basic``): a private key signs assertions (``private_key_jwt``) unless the
        server lists only secret methods; a secret goes in Basic, else in the body when only
        ``client_secret_post`` is listed, else in a ``client_secret_jwt`` assertion when only JWT methods are."""
        from .jwt_auth import ClientSecretJWT, PrivateKeyJWT  # only clients that use them load them

        secret = self._client_secret
        if self._private_key is not None and (secret is None or not methods or "private_key_jwt" in methods):
            return PrivateKeyJWT(client_id, self._private_key, issuer=self.issuer)
        assert secret is not None
        if methods and "client_secret_basic" not in methods:
            if "client_secret_post" in methods:
                return ClientSecretPost(client_id, secret)
            if "client_secret_jwt" in methods:
                return ClientSecretJWT(client_id, secret, issuer=self.issuer)
        return ClientSecretBasic(client_id, secret, self._basic_encoding)

    def _discover_flow(self, *, refresh: bool = False) -> Flow[ServerMetadata | None]:
        if self.issuer is None:
            return None
        if self._metadata is None or refresh:
            self._metadata = yield from cached_discovery(self.issuer, self.transport, refresh=refresh)
        return self._metadata

    def _require_token_endpoint(self) -> str:
        endpoint = self.token_endpoint
        if endpoint is None:  # pragma: no cover - discovery raises first
            raise DiscoveryError("no token endpoint configured or discovered")
        return endpoint

    def _require_device_endpoint(self) -> str:
        endpoint = self.device_authorization_endpoint
        if endpoint is None:
            raise DiscoveryError(
                "the server advertises no device_authorization_endpoint (RFC 8628 §4) and none was configured: "
                "pass device_authorization_endpoint=..."
            )
        return endpoint

    def _ensure_open(self) -> None:
        if self._closed:
            # Not quietly reopened: a new store thread or HTTP client made now would never be closed.
            raise ClientClosed(f"this {type(self).__name__} was closed; make a new one")

    def peek(self) -> Token | None:
        """The token in memory if it is fresh; never blocks, never touches the network or the store."""
        token = self._token
        return token if token is not None and token.is_fresh(self._clock()) else None

    def __repr__(self) -> str:
        where = self.issuer or self._configured_token_endpoint
        grant = self.grant if isinstance(self.grant, str) else self.grant.name
        return f"{type(self).__name__}({where!r}, client_id={self.client_id!r}, grant={grant!r})"

    # -- what get_token() answers without waiting (the drivers supply the two hooks) ---------------------------

    def _answer_now(self, stale: Token | None, min_valid: float) -> Token | None:
        """The token in memory if a caller may have it at once: fresh, or (with background renewal) one a
        worker is renewing meanwhile. None: look in the store, then renew."""
        token = self._token
        if self._usable(token, stale, min_valid):
            if self._unsaved is not None and not self._closed:  # close() made the last try
                self._resave_soon()
            return token
        if token is not None and self._serve_meanwhile(token, stale, min_valid):
            self._start_background()
            return token
        return None

    def _adopt(self, stored: Token | None, stale: Token | None, min_valid: float) -> Token | None:
        """The stored token (another process renewed it, or this one starts), now also in memory, if a caller
        may have it at once: fresh, or (with background renewal) due for a renewal the worker now starts."""
        if stored is None or self._behind(stored):
            return None
        meanwhile = not self._usable(stored, stale, min_valid)
        if meanwhile and not self._serve_meanwhile(stored, stale, min_valid):
            return None
        self.stats.store_hits += 1
        self._token = stored
        if meanwhile:
            self._start_background()
        return stored

    def _behind(self, stored: Token | None) -> bool:
        """The stored token is older than the renewed one this client holds but could not store (a full disk): the
        store is behind memory, and the stored refresh token may have been rotated away (RFC 6749 §6). Such a token
        is never adopted, served or renewed from; a stored token issued later (another process renewed) is."""
        unsaved = self._unsaved
        if stored is None or unsaved is None or stored == unsaved:
            return False
        return not (stored.issued_at or 0.0) > (unsaved.issued_at or 0.0)

    def _renew_from(self, stored: Token | None) -> Token | None:
        """The best token to renew from: memory's, over a stored one that is behind it; else the newer."""
        if self._behind(stored):
            return _newest(self._unsaved, self._token)
        return _newest(stored, self._token)

    def _resave_soon(self) -> None:
        """Try again to store a token that could not be stored (the driver decides where that runs)."""
        raise NotImplementedError

    def _start_background(self) -> None:
        """Start the background renewal unless one runs or the shared pace says not yet (driver-specific)."""
        raise NotImplementedError

    # -- the renewal rules (no I/O) ----------------------------------------------------------------------------

    def _needs_person(self, token: Token) -> bool:
        """Only a person (a device login) can renew this token: keep using it until it must be renewed."""
        return token.refresh_token is None and self.grant == "device_code"

    def _usable(self, token: Token | None, stale: Token | None, min_valid: float = 0.0) -> TypeGuard[Token]:
        """Fresh (before its renewal point), valid ``min_valid`` seconds more, and not the rejected token."""
        if token is None or (stale is not None and token.access_token == stale.access_token):
            return False
        now = self._clock()
        # Only a person can renew some tokens: they stay in use through the refresh-soon window.
        if not token.is_fresh(now) and (
            not self._needs_person(token) or token.state(now) is not RenewalState.REFRESH_SOON
        ):
            return False
        return min_valid <= 0 or token.expires_at is None or token.expires_at - now >= min_valid

    def _still_valid(self, token: Token | None, stale: Token | None) -> TypeGuard[Token]:
        """Not expired yet and not the rejected token: good enough to serve while a renewal is pending or failing."""
        return (
            token is not None
            and not token.is_expired(self._clock())
            and (stale is None or token.access_token != stale.access_token)
        )

    def _fresh_outcome(self, result: Token, stale: Token | None) -> bool:
        """For a caller that waited for another's renewal: may it have that renewal's token? Yes unless it is the
        rejected one. It may have expired already (a server granting ``expires_in: 0``, a lifetime shorter than
        the round trip): it is still the newest there is, as it is for the caller that renewed."""
        return stale is None or result.access_token != stale.access_token

    def _serve_meanwhile(self, token: Token, stale: Token | None, min_valid: float) -> bool:
        """With background renewal, for a token that is not fresh: may a caller have it at once (and a worker
        renew it)? Yes in the refresh-soon window; past ``must_refresh_at`` only while renewing keeps failing (an
        outage: callers keep the valid token rather than wait for attempts that fail). Never the rejected token,
        never one valid for less than ``min_valid``. (On the hot path while a renewal runs: plain comparisons.)"""
        if not self.background_refresh or (stale is not None and token.access_token == stale.access_token):
            return False
        now = self._clock()
        expires_at = token.expires_at
        if expires_at is None or not now < expires_at or (min_valid > 0 and expires_at - now < min_valid):
            return False
        failing = self._backoff.failures > 0
        must = token.must_refresh_at
        if (not failing and must is not None and not now < must) or self._needs_person(token):
            return False  # must-refresh: the caller renews (or, with only a person to renew it, logs in)
        if failing:
            self._served_stale(token)
        return True

    def _background_due(self) -> bool:
        """Under the mutex: may the background worker start now (the shared pace allows it)?"""
        return not self._closed and self._backoff.ready(self._monotonic())

    def _renewed_meanwhile(self, r: Renewal) -> Token | None:
        """For a would-be leader: the token in memory if it is usable after all (a renewal landed between this
        caller's look at memory and now, e.g. while it read the store)."""
        token = self._token
        return token if r.force is None and self._usable(token, r.stale, r.min_valid) else None

    def _remembered(self, stale: Token | None, force: Force) -> Token | BaseException | None:
        """Under the mutex, for a would-be leader: while a transient failure is remembered, the still-valid
        token or the failure to answer with (see ``_throttled``); None: go ahead and renew."""
        if force is not None:
            return None
        remembered = self._backoff.active(self._monotonic())
        if remembered is None:
            return None
        current = self._token
        return current if self._still_valid(current, stale) else remembered

    def _throttled(self, verdict: Token | BaseException) -> Token:
        """Answer from a remembered failure, without a request (outside the mutex: this may call ``on_event``)."""
        self.stats.throttled += 1
        if isinstance(verdict, Token):
            self._served_stale(verdict)
            return verdict
        raise _copy_error(verdict)

    def _served_stale(self, token: Token) -> None:
        self.stats.served_stale += 1
        failures = self._backoff.failures
        if failures != self._stale_reported:
            self._stale_reported = failures
            self._emit(ServedStale(valid_for=_valid_for(token, self._clock()) or 0.0, failures=failures))

    # -- renewal: a flow run by the driver's leader (a caller or the background worker) ------------------------

    def _renew_flow(self, r: Renewal) -> Flow[Token]:
        lease = Lease(self, "login" if r.force == "login" else "renew")
        if not isinstance(self.store, LeasingStore):
            # A store without leases (a custom one): the only cross-process coordination it offers is its lock,
            # so it is held across this renewal, as before leases existed.
            yield Blocking(lease.hold_store_lock)
        try:
            renewal = self._renew_with_lease(lease, r)
            if self._dpop is not None:
                renewal = self._dpop.token_flow(renewal, self._is_token_endpoint)
            token = yield from renewal
        except GeneratorExit:
            raise
        except BaseException:
            if lease.holds_store_lock:
                yield Blocking(lease.drop_store_lock)
            raise
        if lease.holds_store_lock:
            yield Blocking(lease.drop_store_lock)
        return token

    def _renew_with_lease(self, lease: Lease, r: Renewal) -> Flow[Token]:
        candidate = self._token
        grant: str | None = None
        attempt = self._backoff.failures + 1
        started = self._monotonic()
        try:
            if r.force is None and not r.interactive and not self._unattended:
                # Only a person can help (no refresh token anywhere): say so without asking the server anything.
                verdict = yield Blocking(functools.partial(self._person_needed, r))
                if verdict is not None:
                    raise verdict
            yield from self._discover_flow()  # before any lock: a slow issuer never holds anyone up
            found, candidate = yield from self._coordinate(lease, r)
            if found is not None:
                if r.background and found is candidate:  # another process is renewing: look again later
                    with self._mutex:
                        self._backoff.pause(self._monotonic(), self.renewal.min_gap)
                return found
            if self._dpop is not None and self._dpop.key is None:
                yield Blocking(self._ensure_dpop_key)  # the store could not coordinate: make sure anyway
            grant = self._plan(candidate, r)
            self._emit(RenewalStarted(grant, r.background, attempt, _valid_for(candidate, self._clock())))
            renewed = yield from self._obtain(candidate, lease, r)
        except GeneratorExit:
            raise
        except BaseException as error:
            if lease.held:
                yield Blocking(lease.release)
            if not isinstance(error, TokensmithError):
                if r.background and isinstance(error, Exception):
                    self._unexpected(error, grant, attempt)  # nobody waits for it: it must not vanish
                raise
            served = self._failed(error, candidate, grant, attempt, r)
            if served is None:
                raise
            return served
        with self._mutex:
            self._backoff.clear()
        yield from self._keep(renewed, lease)  # the lease goes only once the new token is stored (or storing failed)
        if lease.held:
            yield Blocking(lease.release)
        now = self._clock()
        self._emit(
            RenewalSucceeded(
                grant,
                r.background,
                attempt,
                expires_in=_valid_for(renewed, now),
                refresh_in=None if renewed.refresh_at is None else renewed.refresh_at - now,
                duration=self._monotonic() - started,
            )
        )
        return renewed

    def _unexpected(self, error: Exception, grant: str | None, attempt: int) -> None:
        """A background renewal ended with an error that is not the library's: logged with its traceback, sent
        to ``on_event`` and paced like any failure (without pacing, every call would start it again)."""
        logger.error("the background renewal failed unexpectedly (%s)", type(error).__name__, exc_info=error)
        with self._mutex:
            step = self._backoff.record(error, self._monotonic())
        self._emit(
            RenewalFailed(
                grant, True, attempt, error_class=type(error).__name__, transient=False, retry_in=step, valid_for=None
            )
        )

    def _failed(
        self, error: TokensmithError, candidate: Token | None, grant: str | None, attempt: int, r: Renewal
    ) -> Token | None:
        """Account for a failed renewal; the still-valid token to serve instead, or None (the error propagates)."""
        step: float | None = None
        if error.transient or r.background:
            with self._mutex:
                step = self._backoff.record(error, self._monotonic())
        serve = error.transient and r.force is None and self._still_valid(candidate, r.stale)
        self._emit(
            RenewalFailed(
                grant,
                r.background,
                attempt,
                error_class=type(error).__name__,
                transient=error.transient,
                retry_in=step,
                valid_for=_valid_for(candidate, self._clock()) if serve else None,
                status_code=getattr(error, "status_code", None),
            )
        )
        if serve:
            assert candidate is not None
            if not r.background:  # a caller gets it now (callers of a background renewal are counted as served)
                self._served_stale(candidate)
            return candidate
        return None

    def _coordinate(self, lease: Lease, r: Renewal) -> Flow[tuple[Token | None, Token | None]]:
        """Under the store lock (briefly): re-read the store and claim the lease. Returns (a usable token found
        in the store, None) or (None, the best token to renew from). Waits, without any lock, while another
        process holds a live lease and this one has nothing valid to serve."""
        for _ in range(10_000):  # bounded: each pass either returns or waits on a lease that expires
            try:
                stored, usable, holder = yield Blocking(functools.partial(self._read_and_claim, lease, r))
            except StoreError as error:
                self._store_trouble("coordinate with other processes through the store", error)
                return None, self._renew_from((yield Blocking(self._load)))
            if usable:
                assert stored is not None
                self.stats.store_hits += 1
                self._token = stored
                return stored, None
            candidate = self._renew_from(stored)
            if holder is None:
                return None, candidate
            # Another process is renewing (or logging in) for this key.
            if r.force is None and self._still_valid(candidate, r.stale):
                return candidate, None
            if holder.kind == "login" and not r.interactive:
                raise _login_in_progress(holder)
            self.stats.lease_waits += 1
            logger.info("waiting for another process's %s (pid %d) to finish", holder.kind, holder.pid)
            yield Sleep(0.05 if holder.kind == "renew" else 0.5)
        raise LoginRequired("gave up waiting for another process's renewal")  # pragma: no cover

    def _person_needed(self, r: Renewal) -> LoginRequired | None:
        """``LoginRequired`` (``LoginInProgress`` while another process's login holds the lease) when nothing in
        memory or in the store can be renewed without a person; None when a renewal may still work."""
        stored = self._load()
        if any(t is not None and t.refresh_token for t in (stored, self._token)) or self._usable(
            stored, r.stale, r.min_valid
        ):
            return None
        if isinstance(self.store, LeasingStore):
            try:
                holder = self.store.current_lease(self.cache_key)
            except StoreError:
                holder = None
            if holder is not None and holder.kind == "login" and holder.is_live(self._clock()):
                return _login_in_progress(holder)
        return self._login_required(
            "no valid token is stored, and an interactive login was not allowed: log in first (client.login(), "
            "or get_token(interactive=True))"
        )

    def _plan(self, candidate: Token | None, r: Renewal) -> str:
        """The grant a renewal starts with (for events)."""
        if r.force == "login":
            return "device_code"
        if r.force == "client_credentials":
            return "client_credentials"
        if r.force == "refresh" or (candidate is not None and candidate.refresh_token):
            return "refresh_token"
        if not isinstance(self.grant, str):
            return self.grant.name
        return "client_credentials" if self.grant == "client_credentials" else "device_code"

    @property
    def _unattended(self) -> bool:
        """The grant runs without a person: client credentials, JWT bearer, token exchange."""
        return self.grant == "client_credentials" or not isinstance(self.grant, str)

    def _obtain(self, candidate: Token | None, lease: Lease, r: Renewal) -> Flow[Token]:
        """The network part: refresh, client credentials or a login, as the situation and ``force`` ask."""
        if r.force == "login":
            return (yield from self._interactive_login(lease, r.ui))
        if r.force == "client_credentials":
            return (yield from self._client_credentials(r))
        refresh_token = candidate.refresh_token if candidate is not None else None
        if refresh_token:
            try:
                return (yield from self._refresh(refresh_token, r))
            except InvalidGrant as dead:
                # The refresh token is dead. Forget it only if the store still holds that very one
                # (compare-and-delete): a sibling may have rotated it a moment ago.
                self.stats.invalid_grants += 1
                self._token = None
                self._unsaved = None
                yield Blocking(functools.partial(self._delete, refresh_token))
                logger.info("refresh token rejected (invalid_grant); a new token is needed")
                if r.force == "refresh":
                    raise LoginRequired(
                        "the refresh token was rejected (invalid_grant): log in again (client.login())"
                    ) from dead
                return (yield from self._without_refresh_token(lease, r, dead))
        if r.force == "refresh":
            raise LoginRequired("no refresh token to renew with: log in first (client.login())")
        return (yield from self._without_refresh_token(lease, r, None))

    def _without_refresh_token(self, lease: Lease, r: Renewal, cause: InvalidGrant | None) -> Flow[Token]:
        if self.grant == "client_credentials":
            return (yield from self._client_credentials(r))
        if not isinstance(self.grant, str):
            return (yield from self._extension_grant(self.grant, r))
        if r.interactive:
            return (yield from self._interactive_login(lease, r.ui))
        reason = "the refresh token was rejected (invalid_grant)" if cause else "no valid token is stored"
        raise self._login_required(
            f"{reason}, and an interactive login was not allowed: log in first (client.login(), or "
            "get_token(interactive=True))"
        ) from cause

    # -- grants -----------------------------------------------------------------------------------------------

    def _client_credentials(self, r: Renewal) -> Flow[Token]:
        """One client-credentials request (retried on transient failures: safe to repeat). Bypasses the cache."""
        auth = self.auth
        make = functools.partial(
            token_request,
            self._require_token_endpoint(),
            GrantType.CLIENT_CREDS,
            auth,
            scope=self.scope,
            params=[("audience", self.audience), ("resource", self.resource)],
        )
        request = yield from build(make, may_block(auth))  # a KMS signer's assertion: off the event loop
        token = yield from self._post_token(request, r, replay_safe=True)
        self.stats.client_credentials += 1
        logger.debug("client-credentials token obtained, expires in %s s", _expires_in(token, self._clock()))
        return token

    def _extension_grant(self, grant: JWTBearerGrant | TokenExchangeGrant, r: Renewal) -> Flow[Token]:
        """A JWT bearer (RFC 7523 §2.1) or token exchange (RFC 8693 §2.1) request. Retried on transient failures
        like client credentials, each attempt rebuilt (a callable assertion or subject token is asked again)."""
        request = yield from build(functools.partial(self._extension_request, grant), self._builds_block(grant))
        token = yield from self._post_token(
            request,
            r,
            replay_safe=True,
            token_exchange=isinstance(grant, TokenExchangeGrant),  # RFC 8693 §2.2.1: N_A, issued_token_type
        )
        logger.debug("%s token obtained, expires in %s s", grant.name, _expires_in(token, self._clock()))
        return token

    def _extension_request(self, grant: JWTBearerGrant | TokenExchangeGrant) -> HttpRequest:
        audience = self.audience if not isinstance(grant, TokenExchangeGrant) or not grant.audience else None
        resource = self.resource if not isinstance(grant, TokenExchangeGrant) or not grant.resource else ()
        request = token_request(
            self._require_token_endpoint(),
            grant.grant_type,
            self.auth,
            scope=grant.scope(self.scope),
            params=[*grant.params(), ("audience", audience), ("resource", resource)],
        )
        # Each attempt asks the grant again: a callable's assertion or subject token may be single-use.
        return replace(
            request, renew=functools.partial(self._extension_request, grant), renew_may_block=self._builds_block(grant)
        )

    def _builds_block(self, grant: JWTBearerGrant | TokenExchangeGrant) -> bool:
        """Building this grant's request calls a user's callable that may block (the grant's, or a KMS signer)."""
        return grant.may_block or may_block(self.auth)

    def _exchange_flow(self, grant: JWTBearerGrant | TokenExchangeGrant) -> Flow[Token]:
        """One extension-grant request outside the cache (``exchange_token``): discovery, the request, a Token.
        A DPoP client sends its proof (and answers a nonce challenge) as for any token request (RFC 9449 §5)."""
        yield from self._discover_flow()
        flow = self._extension_grant(grant, Renewal())
        if self._dpop is not None:
            if self._dpop.key is None:
                yield Blocking(self._ensure_dpop_key)
            flow = self._dpop.token_flow(flow, self._is_token_endpoint)
        return (yield from flow)

    def _refresh(self, refresh_token: str, r: Renewal) -> Flow[Token]:
        """One refresh (retried only when the server cannot have seen it, see ``_retry``). Bypasses the cache.
        Keeps the old refresh token when the server returns none (C9)."""
        auth = self.auth
        make = functools.partial(
            token_request,
            self._require_token_endpoint(),
            GrantType.REFRESH_TOKEN,
            auth,
            params=[("refresh_token", refresh_token)],
        )
        request = yield from build(make, may_block(auth))
        renewed = yield from self._post_token(request, r, replay_safe=False, previous_refresh_token=refresh_token)
        self.stats.refreshes += 1
        logger.debug(
            "token refreshed, expires in %s s; refresh token %s",
            _expires_in(renewed, self._clock()),
            "rotated" if renewed.refresh_token != refresh_token else "kept",
        )
        return renewed

    def _post_token(
        self,
        request: HttpRequest,
        r: Renewal,
        *,
        replay_safe: bool,
        previous_refresh_token: str | None = None,
        token_exchange: bool = False,
    ) -> Flow[Token]:
        """Send a token request under the retry policy and turn the answer into a ``Token``. The background
        worker makes one attempt: its retries are the back-off steps (one request per step)."""
        retry = NO_RETRY if r.background else self.retry
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                # A new client assertion (jti) for every attempt (RFC 7523 §3).
                request = yield from fresh_request(request)
            try:
                response = parse_token_response(
                    (yield Post(request)),
                    request.secrets,
                    accepted_token_types=self.accepted_token_types,
                    token_exchange=token_exchange,
                )
            except TokensmithError as error:
                wait = retry.next_wait(error, attempt, replay_safe=replay_safe)
                if wait is None:
                    raise
                yield Sleep(wait)
                continue
            log_protocol_warnings(response.warnings)
            return self._received(response, previous_refresh_token)

    def _interactive_login(self, lease: Lease, ui: LoginUI | None) -> Flow[Token]:
        """A login by a person: the device flow, a browser login (authorization code + PKCE), or, for ``auto``,
        the browser where one can be opened, else the device flow when the server offers it, else the browser
        flow in paste mode."""
        ui = ui or LoginUI(self.on_prompt, self.on_progress, None, None)
        flow = ui.flow or self.login_flow
        paste = False
        if flow == "auto":
            from .browser import can_open_browser  # the browser flow's modules load only when it is used

            yield from self._discover_flow()
            opens = self.open_browser if self.open_browser is not None else can_open_browser()
            if self.authorization_endpoint is not None and opens:
                flow = "browser"
            elif self.device_authorization_endpoint is not None:
                flow = "device"
            elif self.authorization_endpoint is not None and (ui.paste or self.paste) is not None:
                flow, paste = "browser", True
            else:
                raise DiscoveryError(
                    "no way to log in here: no browser can be opened, the server advertises no "
                    "device_authorization_endpoint, and no paste callback was given for a browser login"
                )
        if flow == "device":
            return (yield from self._device_login(lease, ui))
        return (yield from self._browser_login(lease, ui, paste=paste))

    def _browser_login(self, lease: Lease, ui: LoginUI, *, paste: bool) -> Flow[Token]:
        from .browser import browser_login, open_in_browser

        if ui.on_prompt is None:
            raise ValueError("a browser login needs on_prompt to show the link")
        yield from self._discover_flow()
        endpoint = self.authorization_endpoint
        if endpoint is None:
            raise DiscoveryError(
                "the server advertises no authorization_endpoint and none was configured: pass "
                "authorization_endpoint=..."
            )
        login_timeout = ui.login_timeout if ui.login_timeout is not None else self.login_timeout
        lease.kind = "login"
        if lease.held:
            yield Blocking(functools.partial(lease.extend, login_timeout or DEFAULT_LOGIN_LEASE))
        metadata = self._metadata
        # The browser flow waits in its own thread (the loopback listener); its one token request goes through a
        # synchronous transport with this client's settings. ``stop`` reaches that thread: the caller's cancel
        # signal (an asyncio.Event too, read from the thread) or the flow's end (a cancelled task, aclose()).
        stop = _LoginStop(ui.cancel)
        login = Blocking(
            functools.partial(
                browser_login,
                endpoint,
                self._require_token_endpoint(),
                self.auth,
                on_prompt=self._callback_from_thread(ui.on_prompt),
                scope=self.scope,
                audience=self.audience,
                resource=self.resource or None,
                redirect_uri=self.redirect_uri,
                # OpenID Connect Core §11: offline_access (a refresh token) needs the person's consent.
                prompt="consent" if self.scope and "offline_access" in self.scope.split() else None,
                open_browser=None if paste or self.open_browser is False else open_in_browser,
                paste=(ui.paste or self.paste) if paste else None,
                cancel=stop,
                login_timeout=login_timeout,
                transport=self._sync_sender() if self._dpop is None else self._dpop_sender(),
                issuer=metadata.issuer if metadata is not None else None,
                iss_required=bool(metadata is not None and metadata.authorization_response_iss_parameter_supported),
                accepted_token_types=self.accepted_token_types,
                retry=self.retry,
            )
        )
        try:
            token = yield login
        except BaseException:
            stop.set()  # the thread still waiting for the redirect stops and closes its listener (the port)
            raise
        self.stats.logins += 1
        self.stats.token_requests += 1
        return self._bind(self._with_policy(token))

    def _callback_from_thread(self, callback: Callable[[Any], Any]) -> Callable[[Any], None]:
        """A user's callback, for a login running in a worker thread (the browser flow). The thread driver calls
        it there; the asyncio driver runs it on its event loop (and awaits it when it is a coroutine)."""
        return callback

    def _dpop_sender(self) -> Any:
        from .dpop import DPoPSender

        assert self._dpop is not None
        return DPoPSender(self._sync_sender(), self._dpop)

    def _sync_sender(self) -> Any:
        """A synchronous transport with this client's settings (the async client's own is async)."""
        post = getattr(self.transport, "post", None)
        if post is not None and not inspect.iscoroutinefunction(post):
            return self.transport
        from ._transport import Transport

        return Transport(verify=self.transport.verify, proxies=self.transport.proxies)

    def _with_policy(self, token: Token) -> Token:
        """``token`` with its renewal deadlines set by this client's policy (a flow outside the engine built it)."""
        if token.expires_at is None:
            return token
        due = deadlines(token.expires_at, token.issued_at, policy=self.renewal, draw=self._rng())
        return replace(token, refresh_at=due.refresh_at, must_refresh_at=due.must_refresh_at)

    def _device_login(self, lease: Lease, ui: LoginUI | None) -> Flow[Token]:
        ui = ui or LoginUI(self.on_prompt, self.on_progress, None, None)
        if ui.on_prompt is None:
            raise ValueError("a device login needs on_prompt to show the user code and link")
        login_timeout = ui.login_timeout if ui.login_timeout is not None else self.login_timeout
        lease.kind = "login"
        if lease.held:
            yield Blocking(functools.partial(lease.extend, login_timeout or DEFAULT_LOGIN_LEASE))
        response = yield from device_login_flow(
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
            accepted_token_types=self.accepted_token_types,
            clock=self._monotonic,
        )
        self.stats.logins += 1
        return self._received(response, None)

    def _received(self, response: TokenResponse, previous_refresh_token: str | None) -> Token:
        """The ``Token`` for a response that arrived now: expiry and renewal deadlines on this client's clock,
        the deadlines by its renewal policy, with a fresh jitter draw."""
        return self._bind(
            Token.from_response(
                replace(response, received_at=self._clock()),
                previous_refresh_token=previous_refresh_token,
                policy=self.renewal,
                draw=self._rng(),
            )
        )

    def _is_token_endpoint(self, url: str) -> bool:
        return url == self.token_endpoint

    def _sending(self, request: HttpRequest) -> None:
        """The drivers call this for each POST a flow makes: the count of token requests, whatever the grant."""
        if self._is_token_endpoint(request.url):
            self.stats.token_requests += 1

    # -- memory and store -------------------------------------------------------------------------------------

    def _keep(self, token: Token, lease: Lease) -> Flow[None]:
        """Memory first, then the store. A failed save keeps the token (returned and used) and retries later."""
        self._token = token
        error = yield Blocking(functools.partial(self._save, token, lease))
        if error is None:
            self._unsaved = None
            return
        self.stats.save_failures += 1
        self._unsaved = token
        self._next_save_attempt = self._monotonic() + RESAVE_INTERVAL
        logger.warning("could not store the renewed token (%s); keeping it in memory and saving it again later", error)

    # Blocking store calls: the sync driver makes them in the caller's thread, the async one off the loop.

    def _load(self) -> Token | None:
        try:
            return self._usable_binding(self.store.load(self.cache_key))
        except StoreError as error:
            self._store_trouble("read the stored token", error)
            return None

    def _read_and_claim(self, lease: Lease, r: Renewal) -> tuple[Token | None, bool, StoreLease | None]:
        """Under the store's lock: the stored token, whether it is usable as it is, and (if it is not) the
        other holder of the lease, or None when the lease is now ours."""
        with lease.store_lock():
            stored = self._usable_binding(self.store.load(self.cache_key))
            if r.force is None and not self._behind(stored) and self._usable(stored, r.stale, r.min_valid):
                return stored, True, None
            holder = lease.claim()
            if holder is None:
                self._ensure_dpop_key()  # the leader: under the store lock, so only one process makes the key
            return stored, False, holder

    def _save(self, token: Token, lease: Lease) -> StoreError | None:
        try:
            with lease.store_lock():
                self._save_key_if_unsaved()  # the key first: a bound token is no use without it
                self.store.save(self.cache_key, token)
                lease.release()
        except StoreError as error:
            return error
        return None

    def _retry_save(self) -> None:
        token = self._unsaved
        if token is None or self._monotonic() < self._next_save_attempt:
            return
        self._next_save_attempt = self._monotonic() + RESAVE_INTERVAL
        try:
            with self.store.lock(self.cache_key):
                self._save_key_if_unsaved()
                stored = self.store.load(self.cache_key)
                if stored is None or _newest(stored, token) is token:
                    self.store.save(self.cache_key, token)
        except StoreError as error:
            logger.debug("saving the renewed token still fails: %s", error)
            return
        self._unsaved = None
        logger.info("the renewed token that could not be stored earlier is stored now")

    def _delete(self, refresh_token: str) -> None:
        try:
            self.store.delete(self.cache_key, refresh_token=refresh_token)
        except StoreError as error:
            self._store_trouble("remove the rejected refresh token", error)

    def _store_trouble(self, what: str, error: StoreError) -> None:
        log = logger.debug if self._warned_store else logger.warning
        self._warned_store = True
        log("could not %s (%s); going on without it", what, error)

    # -- events -----------------------------------------------------------------------------------------------

    def _emit(self, event: RenewalEvent) -> None:
        """Count, log (never a token or a secret: the events carry none) and hand to ``on_event``."""
        stats = self.stats
        if isinstance(event, RenewalStarted):
            stats.renewals_started += 1
            stats.background_renewals += event.background
            logger.info(
                "renewing the token (%s, %s, attempt %d); the current one is valid for %s s",
                event.grant,
                "background" if event.background else "a caller waits",
                event.attempt,
                _seconds(event.valid_for),
            )
        elif isinstance(event, RenewalSucceeded):
            stats.renewals_succeeded += 1
            stats.consecutive_failures = 0
            logger.info(
                "token renewed (%s) in %.0f ms; valid for %s s, next renewal in %s s",
                event.grant,
                event.duration * 1000,
                _seconds(event.expires_in),
                _seconds(event.refresh_in),
            )
        elif isinstance(event, RenewalFailed):
            stats.renewals_failed += 1
            stats.consecutive_failures = event.attempt
            # A warning when nobody else hears of it (a background renewal, or a still-valid token served
            # meanwhile); when a waiting caller gets the error raised, it is only worth an info line.
            unseen = event.background or event.valid_for is not None
            (logger.warning if unseen else logger.info)(
                "renewing the token failed (%s, %s, attempt %d)%s%s",
                event.error_class,
                "transient" if event.transient else "not transient",
                event.attempt,
                "" if event.valid_for is None else f"; the current token is still valid for {event.valid_for:.0f} s",
                "" if event.retry_in is None else f"; next attempt in {event.retry_in:.1f} s at the earliest",
            )
        else:
            logger.warning(
                "serving a token past its renewal point while renewing fails (%d failures); valid for %.0f s more",
                event.failures,
                event.valid_for,
            )
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # an observer must never break a renewal
                logger.exception("the on_event callback failed on %s", type(event).__name__)


class _LoginStop(threading.Event):
    """A browser login's cancel signal, read by its waiting thread: set when the flow is abandoned, or when the
    caller's own signal is (a ``threading.Event``, or an ``asyncio.Event``, whose ``is_set`` reads one flag)."""

    def __init__(self, also: Cancel | None) -> None:
        super().__init__()
        self._also = also

    def is_set(self) -> bool:
        return super().is_set() or (self._also is not None and self._also.is_set())


def _login_in_progress(holder: StoreLease) -> LoginInProgress:
    return LoginInProgress(
        f"another tokensmith process (pid {holder.pid} on {holder.host}) is running an interactive login for "
        f"this identity; finish it there, or retry after {time.ctime(holder.expires_at)}",
        pid=holder.pid,
        expires_at=holder.expires_at,
    )


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


def _valid_for(token: Token | None, now: float) -> float | None:
    if token is None or token.expires_at is None:
        return None
    return max(0.0, token.expires_at - now)


def _expires_in(token: Token, now: float) -> str:
    return "?" if token.expires_at is None else f"{token.expires_at - now:.0f}"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"
