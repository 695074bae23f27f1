"""Authorization server metadata discovery (RFC 8414, OpenID Connect Discovery; C18, C28) as a flow, with a
per-process cache shared by the sync and async clients."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Protocol

from ._flow import Flow, Get
from ._protocol.discovery import ServerMetadata, metadata_urls, parse_metadata
from .exceptions import DiscoveryError, InvalidResponse, OAuthError

#: Discovery documents change rarely; refetching them on every process start is what a cache is for.
METADATA_TTL = 3600.0


class DiscoveryTransport(Protocol):
    """What the cache key needs to know of a transport: everything that changes what would be fetched."""

    verify: Any
    proxies: Any
    allow_insecure_http: bool

    @property
    def pool(self) -> Any:
        """The connection pool object (a ``requests.Session``, an ``httpx.AsyncClient``) the cache is kept per."""


_lock = threading.Lock()
#: Metadata per pool (weakly: it goes with the pool), then per (issuer, verify, proxies, http policy).
_cache: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str, bool], tuple[ServerMetadata, float]]] = (
    weakref.WeakKeyDictionary()
)


def cached_discovery(issuer: str, transport: DiscoveryTransport, *, refresh: bool = False) -> Flow[ServerMetadata]:
    """Fetch and validate the issuer's metadata, cached per process for ``METADATA_TTL``. The cache is keyed by
    everything that changes what would be fetched: the issuer and the transport's pool, ``verify``, proxies
    and plain-http policy, so two clients with different trust settings never share a document."""
    key = (
        issuer,
        repr(transport.verify),
        repr(sorted((transport.proxies or {}).items())),
        transport.allow_insecure_http,
    )
    now = time.monotonic()
    with _lock:
        try:
            per_pool = _cache.setdefault(transport.pool, {})
        except TypeError:  # a pool object that cannot be weakly referenced: no caching
            per_pool = {}
        cached = per_pool.get(key)
    if cached is not None and not refresh and now - cached[1] < METADATA_TTL:
        return cached[0]
    metadata = yield from discovery_flow(issuer, allow_insecure=transport.allow_insecure_http)
    with _lock:
        per_pool[key] = (metadata, now)
    return metadata


def discovery_flow(issuer: str, *, allow_insecure: bool) -> Flow[ServerMetadata]:
    """Try the OIDC location, then RFC 8414's; the first document that validates wins (C28)."""
    errors: list[str] = []
    for url in metadata_urls(issuer):
        try:
            return parse_metadata((yield Get(url)), issuer, allow_insecure=allow_insecure)
        except (InvalidResponse, OAuthError) as error:
            if error.status_code in (404, 405, 400):
                errors.append(f"{url}: HTTP {error.status_code}")
                continue
            failure = DiscoveryError(f"fetching {url} failed: {error}")
            failure.transient = error.transient  # a 502 from the issuer is worth retrying later
            raise failure from error
    raise DiscoveryError(
        f"no authorization server metadata for {issuer!r} ({'; '.join(errors)}); check the issuer URL, or give "
        "token_endpoint= (and device_authorization_endpoint=) explicitly"
    )
