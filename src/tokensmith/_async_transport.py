"""``AsyncTransport``: the one place the async client does HTTP, with ``httpx.AsyncClient`` (the ``httpx`` extra).

The same policy as the ``requests`` transport (see ``tokensmith._http``): the endpoint check (C24), connect and
read timeouts *and a total deadline* per request, no redirects (C27), never ``~/.netrc`` (httpx reads it only
through an explicit ``httpx.NetRCAuth``, which this transport never installs, whatever ``trust_env`` says),
bodies capped while they stream in, a User-Agent, and failures mapped to tokensmith's transport errors
(``ConnectError``, ``RequestTimeout``, ``TLSError``; not ``requests`` exceptions). Nothing here blocks the event
loop: the client (whose construction loads CA certificates) is built in a worker thread on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import ssl
import time
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from ._http import (
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
    FORM_CONTENT_TYPE,
    EndpointPolicy,
    Timeout,
    Verify,
    body_too_large,
    check_declared_length,
    checked_verify,
    connect_message,
    credential_urls_secrets,
    deadline_message,
    exception_chain,
    log_exchange,
    safe_url,
    scrubbed_cause,
    tls_message,
    total_deadline,
    user_agent,
)
from ._protocol.messages import HttpRequest, HttpResponse
from ._redact import request_secrets
from .exceptions import ConnectError, InvalidEndpointError, RequestTimeout, TLSError, TokensmithError, TransportError

logger = logging.getLogger("tokensmith.http")

__all__ = ["AsyncTransport"]


class AsyncTransport(EndpointPolicy):
    """Sends ``HttpRequest``s with ``httpx.AsyncClient``.

    Pass your own ``client`` (its proxies, TLS settings and limits are then used, and you close it), or let the
    transport make one from ``verify`` (bool, CA bundle path or ``ssl.SSLContext``) and ``proxies``
    (requests-style: ``{"https": "http://proxy:3128"}``); ``aclose()`` closes a client the transport made.
    ``timeout`` is requests-style (a number, or ``(connect, read)``) and also sets each request's total
    deadline (``total_timeout``, default: the number, or connect + read).
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        total_timeout: float | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        proxies: Mapping[str, str] | None = None,
        verify: Verify | ssl.SSLContext = None,
        allow_insecure_http: bool | None = None,
    ) -> None:
        super().__init__(allow_insecure_http)
        self._client = client
        self._owned = client is None
        #: The clients this transport made, one per event loop (a pooled connection belongs to one loop).
        self._made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Made] = weakref.WeakKeyDictionary()
        self.timeout = timeout
        self.total_timeout = total_deadline(timeout) if total_timeout is None else float(total_timeout)
        if not self.total_timeout > 0:
            raise ValueError("the total timeout must be a positive number of seconds")
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._httpx_timeout = httpx.Timeout(read, connect=connect)
        self.max_body = max_body
        self.proxies = dict(proxies) if proxies else None
        self.verify = checked_verify(verify)
        self._user_agent = user_agent(client.headers.get("User-Agent") if client is not None else None, "python-httpx")

    @property
    def pool(self) -> Any:
        """What the metadata cache is kept per: the given client, or this transport (which owns its own)."""
        return self._client if not self._owned else self

    async def client(self) -> httpx.AsyncClient:
        """The ``httpx.AsyncClient`` in use, made on first use (in a worker thread: loading CA certificates
        would stall the event loop for tens of milliseconds).

        One made client per event loop: its pooled connections belong to the loop they were opened in and
        cannot be used, nor closed, from another (``asyncio.run`` per call, a loop per thread). Each is closed
        when its loop shuts down (``asyncio.run``'s ``shutdown_asyncgens()``), or by ``aclose()`` in that loop,
        so no connection is left open for the garbage collector to find."""
        if not self._owned:
            assert self._client is not None
            return self._client
        loop = asyncio.get_running_loop()
        made = self._made.get(loop)
        if made is None:
            made = self._made[loop] = _Made(asyncio.ensure_future(asyncio.to_thread(self._make_client)))
        try:
            client = await asyncio.shield(made.creating)
        except BaseException:
            if made.creating.done() and self._made.get(loop) is made:
                del self._made[loop]  # it could not be made (a bad CA bundle...): the next call tries again
            raise
        if made.closer is None:
            # Started here, in ``loop``: asyncio finalizes it (its ``finally`` closes the client) at shutdown.
            made.closer = _closed_with_the_loop(client)
            await made.closer.asend(None)
        return client

    def _make_client(self) -> httpx.AsyncClient:
        _preload_backend()
        verify: bool | ssl.SSLContext = True if self.verify is None else _ssl_context(self.verify)
        mounts = {
            _proxy_pattern(scheme): httpx.AsyncHTTPTransport(verify=verify, proxy=url)
            for scheme, url in (self.proxies or {}).items()
        }
        return httpx.AsyncClient(verify=verify, mounts=mounts or None, timeout=self._httpx_timeout)

    async def post(self, request: HttpRequest) -> HttpResponse:
        """POST a form. Redirects are returned, never followed (RFC 9700 §4.12)."""
        headers = {"Content-Type": FORM_CONTENT_TYPE, **request.headers}
        body = urlencode(request.form).encode("ascii")
        return await self._send(
            "POST", request.url, headers, body, request_secrets(request.form, headers, request.secrets)
        )

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """GET (metadata discovery). Redirects are not followed either: an issuer must answer itself."""
        return await self._send("GET", url, {"Accept": "application/json", **(headers or {})})

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None = None,
        secrets: tuple[str, ...] = (),
    ) -> HttpResponse:
        self.check(url)
        if self._user_agent:
            headers.setdefault("User-Agent", self._user_agent)
        client = await self.client()
        shown = safe_url(url)
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(
                self._exchange(client, method, url, headers, content, shown, secrets), self.total_timeout
            )
        except TokensmithError:
            raise
        except asyncio.TimeoutError:
            raise RequestTimeout(deadline_message(method, shown, self.total_timeout)) from None
        log_exchange(logger, method, shown, response, started)
        return response

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        shown: str,
        secrets: tuple[str, ...],
    ) -> HttpResponse:
        """One exchange. A failure is ours, chained to a copy of httpx's exception that holds none of ``secrets``
        (see ``scrubbed_cause``), and raised outside the ``except``: httpx's own must not stay its context."""
        try:
            async with client.stream(
                method, url, headers=headers, content=content, timeout=self._httpx_timeout, follow_redirects=False
            ) as raw:
                received = {k.lower(): v for k, v in raw.headers.items()}
                check_declared_length(received, self.max_body, shown, raw.status_code)
                body = bytearray()
                async for chunk in raw.aiter_bytes():  # decoded: the cap applies to what a gzip bomb expands to
                    body += chunk
                    if len(body) > self.max_body:
                        raise body_too_large(self.max_body, shown, raw.status_code)
                return HttpResponse(raw.status_code, received, bytes(body), received_at=time.time())
        except httpx.HTTPError as error:
            failure = _map_error(error, method, shown, self.timeout)
            cause_secrets = (*secrets, *credential_urls_secrets(url, self.proxies))
            cause = scrubbed_cause(error, cause_secrets, "httpx", httpx.HTTPError)
        raise failure from cause

    async def aclose(self) -> None:
        """Close the client this transport made for the running event loop (a client of another loop is
        closed when that loop shuts down)."""
        if not self._owned:
            return
        made = self._made.pop(asyncio.get_running_loop(), None)
        if made is None:
            return
        if made.closer is not None:
            await made.closer.aclose()
            return
        with contextlib.suppress(Exception):  # still being made (or it could not be): close what comes of it
            client = await made.creating
            await client.aclose()


class _Made:
    """A client this transport makes for one event loop: the creation under way, then what closes it."""

    __slots__ = ("closer", "creating")

    def __init__(self, creating: asyncio.Future[httpx.AsyncClient]) -> None:
        self.creating = creating
        self.closer: AsyncGenerator[None, None] | None = None


async def _closed_with_the_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Suspended once started; its ``finally`` closes ``client`` when the transport's ``aclose()`` closes it or
    when its event loop shuts down (``loop.shutdown_asyncgens()``, which ``asyncio.run`` calls once every task
    is done). A loop closed without that step leaves the connections to the garbage collector, as before."""
    try:
        yield
    finally:
        try:
            await client.aclose()
        except Exception as error:  # a connection already broken: nothing left to close
            logger.debug("closing the HTTP client failed: %s", type(error).__name__)


def _preload_backend() -> None:
    """httpx's first request imports its async I/O backend (anyio's asyncio backend): some 25 ms of imports
    that would run on the event loop. Done here, in the worker thread that builds the client; best effort."""
    with contextlib.suppress(ImportError):
        importlib.import_module("anyio._backends._asyncio")


def _map_error(error: httpx.HTTPError, method: str, shown: str, timeout: Timeout) -> TokensmithError:
    if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
        return RequestTimeout(f"{method} {shown}: timed out connecting (timeout={timeout})", request_sent=False)
    if isinstance(error, httpx.TimeoutException):
        return RequestTimeout(f"{method} {shown}: timed out (timeout={timeout})")
    if isinstance(error, httpx.ConnectError | httpx.ProxyError):
        if _caused_by_tls(error):
            return TLSError(tls_message(method, shown, type(error).__name__))
        return ConnectError(connect_message(method, shown, type(error).__name__), request_sent=False)
    if isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError):
        return ConnectError(connect_message(method, shown, type(error).__name__), request_sent=None)
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return InvalidEndpointError(f"{method} {shown}: not a usable URL ({type(error).__name__})")
    return TransportError(f"{method} {shown}: {type(error).__name__}")


def _caused_by_tls(error: BaseException) -> bool:
    return any(isinstance(seen, ssl.SSLError) for seen in exception_chain(error))


def _ssl_context(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx wants a bool or an ``SSLContext``; a CA bundle path (file or directory) becomes a context."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def _proxy_pattern(scheme: str) -> str:
    """A requests-style proxies key (``"https"``, ``"all"``, ``"http://host"``) as an httpx mount pattern."""
    return scheme if "://" in scheme else f"{scheme}://"
