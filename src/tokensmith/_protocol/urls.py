"""Endpoint URL policy (C3, C24): TLS everywhere except loopback, decided before any network access."""

from __future__ import annotations

import functools
import ipaddress
import os
from urllib.parse import urlsplit

from ..exceptions import InsecureEndpointError, InvalidEndpointError

#: Set to "1" to allow plain http:// to non-loopback hosts (test rigs behind a TLS-terminating proxy only).
ALLOW_INSECURE_ENV = "TOKENSMITH_ALLOW_INSECURE_HTTP"


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost`` (RFC 8252 §7.3 / §8.3)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, *, allow_insecure: bool | None = None) -> str:
    """Return ``url`` if a token client may send credentials to it; raise otherwise (see ``_check``)."""
    if not isinstance(url, str):
        raise InvalidEndpointError(f"endpoint must be a string URL, not {type(url).__name__}")
    if allow_insecure is None:
        allow_insecure = os.environ.get(ALLOW_INSECURE_ENV, "") == "1"
    return _check(url, allow_insecure)


@functools.lru_cache(maxsize=256)  # the same few endpoints, on every request
def _check(url: str, allow_insecure: bool) -> str:
    """Return ``url`` if a token client may send credentials to it; raise otherwise.

    ``https`` is always fine; ``http`` only for loopback hosts, unless ``allow_insecure`` (default: the
    ``TOKENSMITH_ALLOW_INSECURE_HTTP`` environment variable) says otherwise. Other schemes and URLs
    without a scheme are left for the HTTP layer to reject (it raises before sending anything), which keeps
    callers that patch the HTTP session in tests working with bare names such as ``"test.com"``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "http":
        if not parts.hostname:
            raise InvalidEndpointError(f"endpoint URL has no host: {url!r}")
        if not allow_insecure and not is_loopback_host(parts.hostname):
            raise InsecureEndpointError(
                f"refusing plain http:// for non-loopback host {parts.hostname!r}: OAuth endpoints need TLS "
                f"(RFC 6749 §3.2, RFC 9700 §2.6). Set {ALLOW_INSECURE_ENV}=1 to override for a test rig."
            )
    if parts.username or parts.password:
        # RFC 6749 §2.3.1: credentials MUST NOT appear in the request URI.
        raise InvalidEndpointError("endpoint URL must not carry credentials (RFC 6749 §2.3.1)")
    return url
