"""The HTTP policy both transports share, without importing an HTTP library: timeouts and the total deadline,
the endpoint check, the body cap, the User-Agent, and what a URL may show in a message (C24, C27, C32).

``_transport.Transport`` applies it with ``requests``; ``_async_transport.AsyncTransport`` with ``httpx``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

from ._protocol.messages import HttpRequest, HttpResponse
from ._protocol.urls import check_endpoint
from ._redact import scrub_library_text, url_secrets
from ._version import __version__
from .exceptions import ConfigurationError, ResponseTooLarge

#: (connect, read) seconds. The seed module had none: a dead IdP hung the caller forever.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 30.0)
#: Token responses are a few KiB; anything past this is not a token response.
DEFAULT_MAX_BODY = 1024 * 1024
USER_AGENT = f"tokensmith/{__version__}"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: Set to "1" to allow plain http:// to non-loopback hosts (test rigs behind a TLS-terminating proxy only).
ALLOW_INSECURE_ENV = "TOKENSMITH_ALLOW_INSECURE_HTTP"

Timeout = float | tuple[float, float]
Verify = bool | str | None


class HttpSender(Protocol):
    """What the drivers need from a transport: ``Transport`` here, or the compat module's test-double adapter."""

    def post(self, request: HttpRequest) -> HttpResponse: ...


def insecure_http_allowed() -> bool:
    """The ``TOKENSMITH_ALLOW_INSECURE_HTTP=1`` opt-out, read here (the protocol core reads no environment)."""
    return os.environ.get(ALLOW_INSECURE_ENV, "") == "1"


def safe_url(url: str) -> str:
    """The URL without query, fragment or userinfo, for messages and logs."""
    try:
        p = urlsplit(url)
        return urlunsplit((p.scheme, p.netloc.rpartition("@")[2], p.path, "", ""))
    except ValueError:
        return "<unparsable URL>"


V = TypeVar("V")


def checked_verify(verify: V) -> V:
    """``verify`` as given, once a CA bundle path is known to exist: a mistyped path is a ``ConfigurationError``
    naming it now, not a bare ``OSError``/``FileNotFoundError`` from deep in requests or httpx at the first
    request (a stat, no network)."""
    if isinstance(verify, str) and not os.path.exists(os.path.expanduser(verify)):
        raise ConfigurationError(f"verify={verify!r}: no CA bundle file or directory there")
    return verify


def scrubbed_cause(
    error: BaseException, secrets: tuple[str, ...], package: str, fallback: type[BaseException]
) -> BaseException:
    """What is chained under our transport error (C10): the HTTP library's exception of the same type with its
    message scrubbed, never the exception itself. That one holds the request (``.request``: the form body with the
    client secret or refresh token, the ``Authorization`` and ``DPoP`` headers) and the library's own chain (its
    connection pool with proxy headers); every traceback renderer and error tracker would reach them.

    ``package``: the library's module prefix (``"requests."``, ``"httpx"``); a caller's session or transport may
    raise its own subclass, whose constructor we do not know, so the nearest class of the library is used, and
    ``fallback`` when that one wants more arguments."""
    message = scrub_library_text(str(error), secrets)
    cls = next((c for c in type(error).__mro__ if c.__module__.startswith(package)), fallback)
    try:
        clean: BaseException = cls(message)
    except Exception:  # e.g. requests' JSONDecodeError, httpx's HTTPStatusError
        clean = fallback(message)
    return clean


def credential_urls_secrets(url: str, *proxy_maps: Mapping[str, str] | None) -> tuple[str, ...]:
    """Credentials in the request URL and in any proxy URL the HTTP library may have used: the transport's, the
    session's, and the environment's (``HTTPS_PROXY`` and the like)."""
    proxies = [str(p) for proxy_map in (*proxy_maps, getproxies()) for p in (proxy_map or {}).values()]
    return url_secrets([url, *proxies])


def total_deadline(timeout: Timeout) -> float:
    """The whole-request budget implied by a requests-style timeout: ``t`` for a number, connect + read for a
    pair (what a caller who wrote the pair expects the worst case to be)."""
    if isinstance(timeout, tuple):
        return float(timeout[0]) + float(timeout[1])
    return float(timeout)


def user_agent(current: object, default_prefix: str) -> str | None:
    """The User-Agent to send: None to keep a caller's own one; ours (before the library's default) otherwise."""
    if isinstance(current, str) and current and not current.startswith(default_prefix):
        return None
    return f"{USER_AGENT} {current}" if isinstance(current, str) and current else USER_AGENT


def check_declared_length(headers: Mapping[str, str], max_body: int, shown: str, status: int) -> None:
    """``ResponseTooLarge`` before reading a body whose announced length is over the cap."""
    declared = headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_body:
        raise ResponseTooLarge(
            f"{shown} announced a {declared}-byte body, over the {max_body}-byte cap", status_code=status
        )


def body_too_large(max_body: int, shown: str, status: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"{shown} sent a body over the {max_body}-byte cap; stopped reading", status_code=status)


def log_exchange(logger: logging.Logger, method: str, shown: str, response: HttpResponse, started: float) -> None:
    """One DEBUG line per request: what, where (no query, no userinfo), status, size, time. Never a body."""
    logger.debug(
        "%s %s -> HTTP %s, %d bytes, %.0f ms",
        method,
        shown,
        response.status_code,
        len(response.body),
        (time.monotonic() - started) * 1000,
    )


def deadline_message(method: str, shown: str, total: float) -> str:
    return f"{method} {shown}: no complete answer within the total deadline of {total:g} s"


def connect_message(method: str, shown: str, what: str) -> str:
    return f"{method} {shown}: connection failed ({what}); is the server up and reachable?"


def tls_message(method: str, shown: str, what: str) -> str:
    return f"{method} {shown}: TLS failed ({what}); check the CA bundle (`verify`, REQUESTS_CA_BUNDLE)"


def exception_chain(
    error: BaseException, inner: Callable[[BaseException], BaseException | None] | None = None, limit: int = 8
) -> Iterator[BaseException]:
    """``error`` and what it wraps: ``inner(e)`` when it names one (a library's own wrapping), else the cause or
    context; at most ``limit`` links (a chain can loop)."""
    seen: BaseException | None = error
    for _ in range(limit):
        if seen is None:
            return
        yield seen
        seen = (inner(seen) if inner is not None else None) or seen.__cause__ or seen.__context__


class EndpointPolicy:
    """The endpoint policy (C24), checked once per URL per transport."""

    allow_insecure_http: bool

    def __init__(self, allow_insecure_http: bool | None) -> None:
        self.allow_insecure_http = insecure_http_allowed() if allow_insecure_http is None else allow_insecure_http
        self._checked: set[str] = set()

    def check(self, url: str) -> str:
        if url not in self._checked:
            check_endpoint(url, allow_insecure=self.allow_insecure_http)
            self._checked.add(url)
        return url
