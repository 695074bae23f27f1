"""``TokenClient``: discovery, grants, a token store, and renewal that never herds and never loses a token.

``get_token()`` is the one call most code needs. It returns a usable token by trying, in order: the token in
memory, the store, a refresh, a new client-credentials token, and an interactive device login (only when the
caller allows it; otherwise ``LoginRequired``). Renewals are single-flight: one per client across threads
(a lock), one per store across processes (the store's lock, then a re-read of the store), so a rotating
refresh token is never spent twice (C26).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from ._protocol.client_auth import BasicEncoding, ClientAuth, ClientSecretBasic, ClientSecretPost, NoClientAuth
from ._protocol.discovery import ServerMetadata, metadata_urls, parse_metadata
from ._protocol.messages import HttpRequest
from ._protocol.params import ScopeInput, normalize_scope
from ._protocol.token import GrantType, parse_token_response, token_request
from ._protocol.urls import check_endpoint
from ._retry import RetryPolicy
from ._transport import DEFAULT_TIMEOUT, Timeout, Transport, Verify
from .device import DevicePrompt, PollProgress, device_login
from .exceptions import DiscoveryError, InvalidGrant, InvalidResponse, LoginRequired, OAuthError, TokensmithError
from .stores.base import TokenStore, cache_key
from .stores.memory import MemoryStore
from .token import Token

logger = logging.getLogger("tokensmith.client")

Grant = Literal["client_credentials", "device_code"]
#: Discovery documents change rarely; refetching them on every process start is what a cache is for.
METADATA_TTL = 3600.0
_metadata_cache: dict[str, tuple[ServerMetadata, float]] = {}
_metadata_lock = threading.Lock()


@dataclass
class ClientStats:
    """Counts, for tests, benchmarks and monitoring: how often the client went to the network."""

    token_requests: int = 0
    client_credentials: int = 0
    refreshes: int = 0
    logins: int = 0
    invalid_grants: int = 0
    store_hits: int = 0


class TokenClient:
    """An OAuth 2.0 client for one authorization server, one client id and one set of token parameters.

    Give either explicit endpoints (``token_endpoint``, ``device_authorization_endpoint``) or an ``issuer``
    (``TokenClient.from_issuer``) whose metadata is discovered on first use and cached. Client authentication:
    ``auth`` as an object (``NoClientAuth``, ``ClientSecretBasic``, ``ClientSecretPost``), or ``client_secret``
    (Basic with RFC 6749 §2.3.1 encoding, or ``client_secret_post`` when the server's metadata only lists that).
    ``grant`` defaults to client credentials for a confidential client and the device flow for a public one.
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
    ) -> None:
        if token_endpoint is None and issuer is None:
            raise ValueError("give a token_endpoint or an issuer")
        for url in (token_endpoint, device_authorization_endpoint, issuer):
            if url is not None:
                check_endpoint(url)  # C24: refuse plain http:// early, before any network access
        self.issuer = issuer
        self._token_endpoint = token_endpoint
        self._device_endpoint = device_authorization_endpoint
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
        self.transport = transport or Transport(session, timeout=timeout, verify=verify, proxies=proxies)
        self.retry = retry or RetryPolicy()
        self.accepted_token_types = tuple(accepted_token_types)
        self.stats = ClientStats()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._token: Token | None = None
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
        """A client configured from the issuer's metadata (OpenID Connect Discovery, then RFC 8414), fetched on
        first use, validated (the document's ``issuer`` must be identical, C28) and cached for an hour."""
        return cls(issuer=issuer, client_id=client_id, client_secret=client_secret, **kwargs)

    # -- configuration resolved on demand -------------------------------------------------------------------

    @property
    def metadata(self) -> ServerMetadata | None:
        return None if self.issuer is None else discover(self.issuer, self.transport)

    @property
    def token_endpoint(self) -> str:
        if self._token_endpoint is None:
            metadata = self.metadata
            assert metadata is not None
            self._token_endpoint = metadata.token_endpoint
        return self._token_endpoint

    @property
    def device_authorization_endpoint(self) -> str:
        if self._device_endpoint is None:
            metadata = self.metadata
            if metadata is None or metadata.device_authorization_endpoint is None:
                raise DiscoveryError("no device_authorization_endpoint configured or advertised (RFC 8628 §4)")
            self._device_endpoint = metadata.device_authorization_endpoint
        return self._device_endpoint

    @property
    def auth(self) -> ClientAuth:
        if self._auth is None:
            if self._client_secret is None:
                self._auth = NoClientAuth(self.client_id)
            else:
                assert self.client_id is not None, "a client secret needs a client_id"
                metadata = self.metadata
                methods = metadata.token_endpoint_auth_methods_supported if metadata is not None else ()
                if methods and "client_secret_basic" not in methods and "client_secret_post" in methods:
                    self._auth = ClientSecretPost(self.client_id, self._client_secret)
                else:
                    self._auth = ClientSecretBasic(self.client_id, self._client_secret, self._basic_encoding)
        return self._auth

    # -- the one call -----------------------------------------------------------------------------------------

    def peek(self) -> Token | None:
        """The token in memory if it is fresh; never blocks, never touches the network or the store."""
        token = self._token
        return token if token is not None and token.is_fresh(self._clock()) else None

    def get_token(self, *, stale: Token | None = None, interactive: bool | None = None) -> Token:
        """A usable token. ``stale``: a token a resource server just rejected (401 ``invalid_token``); it is
        renewed unless the current token is already a different one, so N concurrent 401s cause one renewal.
        ``interactive`` overrides the client's setting for a device login when nothing else works."""
        token = self._token
        if self._usable(token, stale):
            return token
        with self._lock:  # one renewal per client, across threads
            token = self._token
            if self._usable(token, stale):
                return token
            with self.store.lock(self.cache_key):  # one renewal per store, across processes
                stored = self.store.load(self.cache_key)
                if self._usable(stored, stale):
                    self.stats.store_hits += 1
                    self._token = stored
                    return stored
                candidate = stored if stored is not None else token
                renewed = self._renew(candidate, self.interactive if interactive is None else interactive)
                if renewed is not candidate:
                    self.store.save(self.cache_key, renewed)
                self._token = renewed
                return renewed

    def _usable(self, token: Token | None, stale: Token | None) -> TypeGuard[Token]:
        """Fresh, and not the token a resource server just rejected."""
        return (
            token is not None
            and token.is_fresh(self._clock())
            and (stale is None or token.access_token != stale.access_token)
        )

    def _renew(self, candidate: Token | None, interactive: bool) -> Token:
        if candidate is not None and candidate.refresh_token:
            try:
                return self.refresh(candidate)
            except InvalidGrant:
                # The refresh token is dead. Forget it only if the store still holds that very one
                # (compare-and-delete): a sibling may have rotated it a moment ago.
                self.stats.invalid_grants += 1
                self.store.delete(self.cache_key, refresh_token=candidate.refresh_token)
                self._token = None
                logger.info("refresh token rejected (invalid_grant); a new token is needed")
            except TokensmithError as error:
                if error.transient and not candidate.is_expired(self._clock()):
                    logger.warning(
                        "refresh failed (%s); the current access token is still valid, using it", type(error).__name__
                    )
                    return candidate
                raise
        if self.grant == "client_credentials":
            return self.fetch_client_credentials()
        if interactive:
            return self._device_login()
        raise LoginRequired("no valid token, and an interactive login was not allowed: run a login first")

    # -- grants -----------------------------------------------------------------------------------------------

    def fetch_client_credentials(self) -> Token:
        """A new token by the client-credentials grant (RFC 6749 §4.4, C5). Always a network request; retried on
        transient failures (safe to repeat)."""
        request = token_request(
            self.token_endpoint,
            GrantType.CLIENT_CREDS,
            self.auth,
            scope=self.scope,
            params=[("audience", self.audience), ("resource", self.resource)],
        )
        token = self._post_token(request, replay_safe=True)
        self.stats.client_credentials += 1
        logger.info("client-credentials token obtained, expires in %s s", _expires_in(token, self._clock()))
        return token

    def refresh(self, token: Token | None = None) -> Token:
        """Renew with the refresh token (RFC 6749 §6, C9). Keeps the old refresh token when the server returns
        none; retried only when the server cannot have seen the request (see ``_retry``)."""
        token = token if token is not None else self._token
        if token is None or not token.refresh_token:
            raise LoginRequired("no refresh token to renew with")
        request = token_request(
            self.token_endpoint,
            GrantType.REFRESH_TOKEN,
            self.auth,
            params=[("refresh_token", token.refresh_token)],
        )
        renewed = self._post_token(request, replay_safe=False, previous_refresh_token=token.refresh_token)
        self.stats.refreshes += 1
        logger.info(
            "token refreshed, expires in %s s; refresh token %s",
            _expires_in(renewed, self._clock()),
            "rotated" if renewed.refresh_token != token.refresh_token else "kept",
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
            return Token.from_response(response, previous_refresh_token=previous_refresh_token)

        return self.retry.run(call, replay_safe=replay_safe, sleep=self._sleep)

    def login(
        self,
        *,
        on_prompt: Callable[[DevicePrompt], None] | None = None,
        on_progress: Callable[[PollProgress], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Token:
        """An interactive device login (RFC 8628). The prompt goes to ``on_prompt`` (for a terminal, e.g.
        ``tokensmith.cli.presenter.TerminalPresenter().show_prompt``). Stores the token."""
        token = self._device_login(on_prompt=on_prompt, on_progress=on_progress, cancel=cancel, timeout=timeout)
        with self._lock:
            self._token = token
            self.store.save(self.cache_key, token)
        return token

    def _device_login(
        self,
        *,
        on_prompt: Callable[[DevicePrompt], None] | None = None,
        on_progress: Callable[[PollProgress], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Token:
        """The device login itself; storing the result is the caller's business (get_token saves once)."""
        prompt = on_prompt or self.on_prompt
        if prompt is None:
            raise ValueError("a device login needs on_prompt to show the user code and link")
        response = device_login(
            self.device_authorization_endpoint,
            self.token_endpoint,
            self.auth,
            on_prompt=prompt,
            scope=self.scope,
            audience=self.audience,
            resource=self.resource or None,
            on_progress=on_progress or self.on_progress,
            cancel=cancel,
            timeout=timeout if timeout is not None else self.login_timeout,
            transport=self.transport,
            accepted_token_types=self.accepted_token_types,
        )
        self.stats.logins += 1
        return Token.from_response(response)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.issuer or self._token_endpoint
        return f"TokenClient({where!r}, client_id={self.client_id!r}, grant={self.grant!r})"


def discover(issuer: str, transport: Transport) -> ServerMetadata:
    """Fetch and validate the issuer's metadata (cached per process for ``METADATA_TTL``)."""
    now = time.monotonic()
    with _metadata_lock:
        cached = _metadata_cache.get(issuer)
        if cached is not None and now - cached[1] < METADATA_TTL:
            return cached[0]
    errors: list[str] = []
    for url in metadata_urls(issuer):
        try:
            metadata = parse_metadata(transport.get(url), issuer)
        except (InvalidResponse, OAuthError) as error:
            if error.status_code in (404, 405, 400):
                errors.append(f"{url}: HTTP {error.status_code}")
                continue
            raise DiscoveryError(f"fetching {url} failed: {error}") from error
        with _metadata_lock:
            _metadata_cache[issuer] = (metadata, now)
        return metadata
    raise DiscoveryError(f"no authorization server metadata for {issuer!r} ({'; '.join(errors)})")


def _expires_in(token: Token, now: float) -> str:
    return "?" if token.expires_at is None else f"{token.expires_at - now:.0f}"
