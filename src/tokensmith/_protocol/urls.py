"""Endpoint URL policy (C3, C24): TLS everywhere except loopback, decided before any network access.

Pure: whether plain http is allowed for a test rig is the caller's decision (the transport reads
``TOKENSMITH_ALLOW_INSECURE_HTTP``), and nothing is cached here (the transport checks each URL once).
"""

from __future__ import annotations

import ipaddress
import unicodedata
from urllib.parse import urlsplit

from ..exceptions import InsecureEndpointError, InvalidEndpointError


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost`` (RFC 8252 §7.3 / §8.3)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_invisible_characters(text: str) -> bool:
    """Whitespace, control or format characters anywhere. A URL has none; where one appears, HTTP libraries
    disagree on what it means (requests strips a leading U+00A0 *after* our scheme check would have run)."""
    return any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs") for ch in text)


def is_secure_url(url: str) -> bool:
    """``https``, or ``http`` to a loopback host (RFC 8252 §7.3), with no invisible characters."""
    if has_invisible_characters(url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    return bool(host) and (scheme == "https" or (scheme == "http" and is_loopback_host(host or "")))


def check_endpoint(url: str, *, allow_insecure: bool = False) -> str:
    """Return ``url`` if a token client may send credentials to it; raise otherwise.

    - any whitespace, control or format character anywhere: ``InvalidEndpointError``;
    - ``https`` is fine; ``http`` only for loopback hosts unless ``allow_insecure``
      (``InsecureEndpointError``); any other scheme: ``InvalidEndpointError``;
    - credentials in the URL: ``InvalidEndpointError`` (RFC 6749 §2.3.1).

    A URL without any scheme (``"test.com"``) is left for the HTTP layer, which refuses it before sending
    anything; callers that patch the HTTP session in their tests pass such bare names.
    """
    if not isinstance(url, str):
        raise InvalidEndpointError(f"endpoint must be a string URL, not {type(url).__name__}")
    if has_invisible_characters(url):
        raise InvalidEndpointError(
            f"endpoint URL {_shown(url)!r} contains whitespace or invisible characters; remove them (check the "
            "configuration or environment variable it came from)"
        )
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        credentials = parts.username or parts.password
    except ValueError as error:
        raise InvalidEndpointError(f"endpoint URL {_shown(url)!r} cannot be parsed: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("", "http", "https") or (scheme == "" and url.startswith("//")):
        raise InvalidEndpointError(f"endpoint URL {_shown(url)!r}: only https:// (or http:// to loopback) is allowed")
    if scheme in ("http", "https") and not hostname:
        raise InvalidEndpointError(f"endpoint URL has no host: {_shown(url)!r}")
    if scheme == "http" and not allow_insecure and not is_loopback_host(hostname or ""):
        raise InsecureEndpointError(
            f"refusing plain http:// for non-loopback host {hostname!r}: OAuth endpoints need TLS "
            "(RFC 6749 §3.2, RFC 9700 §2.6). Use https://, or set TOKENSMITH_ALLOW_INSECURE_HTTP=1 for a test rig."
        )
    if credentials:
        # RFC 6749 §2.3.1: credentials MUST NOT appear in the request URI.
        raise InvalidEndpointError(f"endpoint URL {_shown(url)!r} must not carry credentials (RFC 6749 §2.3.1)")
    return url


def _shown(url: str) -> str:
    """``url`` for an error message: at most 200 characters, without userinfo (``user:password@``), query or
    fragment, which may hold secrets. Works on URLs that cannot be parsed, which is when it is needed."""
    authority_at = url.find("//")
    if authority_at >= 0:
        start = authority_at + 2
        end = min((i for i in (url.find(c, start) for c in "/?#") if i >= 0), default=len(url))
        at = url.rfind("@", start, end)
        if at >= 0:
            url = f"{url[:start]}***@{url[at + 1 :]}"
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    return url[:cut][:200] + ("?…" if cut < len(url) else "")
