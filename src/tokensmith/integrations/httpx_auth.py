"""``httpx`` auth handler (the ``httpx`` extra): ``httpx.Client(auth=TokenAuth(client))``, sync or async.

Same rules as the ``requests`` handler: ``Authorization: Bearer <token>`` (C11, never in the URL, C25); on a
``401`` with ``WWW-Authenticate: Bearer error="invalid_token"`` (C12) report the token stale once and re-send
once. With an ``AsyncTokenClient`` (``httpx.AsyncClient(auth=TokenAuth(async_client))``) the async flow awaits
it directly; with a sync ``TokenClient`` it never blocks the event loop on a renewal: see
:meth:`TokenAuth.async_auth_flow`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any, TypeVar, cast

import httpx

from .._protocol.dpop import is_dpop_invalid_token, is_dpop_refusal, is_resource_nonce_challenge, origin
from ..token import Token
from . import (
    AsyncTokenSource,
    TokenSource,
    dpop_headers_from,
    is_invalid_token,
    merge_cookie_header,
    note_dpop_nonce,
)

__all__ = ["TokenAuth"]

T = TypeVar("T")


class TokenAuth(httpx.Auth):
    """Bearer-token auth for ``httpx.Client`` and ``httpx.AsyncClient``, backed by a
    :class:`~tokensmith.integrations.TokenSource`.

    - C11 (RFC 6750 §2.1): sets ``Authorization: Bearer <b64token>`` (syntax validated by ``Token``).
    - C25 (RFC 9700 §4.3.2): the token is never put in the URL.
    - C12 (RFC 6750 §3.1): on a ``401`` whose ``WWW-Authenticate`` has a ``Bearer`` challenge with
      ``error="invalid_token"``, calls ``source.get_token(stale=<the token that was sent>)`` once and re-sends
      once; httpx puts the rejected response in ``history``. A second rejection is returned (no loop). A ``401``
      without ``error``, ``invalid_request`` and ``403 insufficient_scope`` are returned without renewal.
    - ``requires_request_body = True``: httpx reads the body (even a generator) before the flow starts, so it can
      always be replayed. Like httpx's own ``DigestAuth``, this buffers uploads in memory.
    - Errors from the source (``TokensmithError`` subclasses) propagate to the caller.
    """

    requires_request_body = True

    def __init__(self, source: TokenSource | AsyncTokenSource) -> None:
        self._source = source
        self._get_token: Callable[..., Any] = source.get_token
        #: An ``AsyncTokenClient`` (or any source whose ``get_token`` is a coroutine function): awaited directly.
        self._is_async = inspect.iscoroutinefunction(source.get_token)
        peek = getattr(source, "peek", None)
        self._peek: Callable[[], Token | None] | None = peek if callable(peek) else None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._is_async:
            raise TypeError(
                "an async token source (AsyncTokenClient) needs httpx.AsyncClient; use a TokenClient with httpx.Client"
            )
        request.read()  # requires_request_body: overriding this method means honouring it here (a no-op for bytes)
        token = self._get_token()
        self._apply(request, token)
        response = yield request
        retry = self._retry_kind(request, response, token)
        if retry is not None:
            if retry == "stale":
                token = self._get_token(stale=token)
            elif retry == "redirected":
                request = response.request
            _add_cookies_set_by(response, request)
            self._apply(request, token)
            response = yield request
            self._observe(request, response, token)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """As :meth:`sync_auth_flow`, without blocking the event loop.

        An async source (``AsyncTokenClient``) is awaited directly: its cached path never leaves the loop, and
        its renewals are asyncio single flights. A sync source's ``get_token()`` may do network I/O (a renewal)
        and take a thread lock, so it runs in a worker thread (``anyio.to_thread.run_sync``; works under asyncio
        and trio). When such a source offers the optional non-blocking ``peek()`` and it returns a fresh cached
        token, that token is used inline with no thread hop. The stale-token renewal after a ``401`` always runs
        in a worker thread then. A DPoP proof signed by a callable that may block (``DPoPKey.from_signer``: an
        HSM or KMS; the source says so with ``dpop_proofs_may_block``) is made in a worker thread too.
        """
        await request.aread()  # requires_request_body (a no-op for bytes bodies)
        token = await self._token_for(None)
        await self._aapply(request, token)
        response = yield request
        retry = self._retry_kind(request, response, token)
        if retry is not None:
            if retry == "stale":
                token = await self._token_for(token)
            elif retry == "redirected":
                request = response.request
            _add_cookies_set_by(response, request)
            await self._aapply(request, token)
            response = yield request
            self._observe(request, response, token)

    def _apply(self, request: httpx.Request, token: Token) -> None:
        """``Authorization`` (Bearer, C11; or DPoP with a fresh proof carrying ``ath`` and the resource's latest
        nonce, RFC 9449 §7.1)."""
        if token.is_dpop:
            request.headers.update(dpop_headers_from(self._source, request.method, str(request.url), token))
        else:
            request.headers["Authorization"] = token.authorization
            request.headers.pop("DPoP", None)

    async def _aapply(self, request: httpx.Request, token: Token) -> None:
        """``_apply`` without blocking the event loop: a DPoP proof whose signer may block is made in a worker
        thread; an in-memory key's proof (microseconds) and a Bearer header are set right here."""
        if token.is_dpop and getattr(self._source, "dpop_proofs_may_block", False) is True:
            make = functools.partial(dpop_headers_from, self._source, request.method, str(request.url), token)
            request.headers.update(await _in_thread(make))
        else:
            self._apply(request, token)

    def _observe(self, request: httpx.Request, response: httpx.Response, token: Token) -> None:
        nonce = response.headers.get("DPoP-Nonce")
        if token.is_dpop and nonce is not None:
            # RFC 9449 §8.1, §9: the nonce of the server that answered (after a redirect, not the one signed for).
            note_dpop_nonce(self._source, _answered_url(request, response), nonce)

    def _retry_kind(self, request: httpx.Request, response: httpx.Response, token: Token) -> str | None:
        """``"nonce"`` (RFC 9449 §9: same token, a new proof with the resource's nonce), ``"stale"`` (C12, or its
        DPoP twin: renew, then retry), ``"redirected"`` (send to where httpx was redirected, with a proof for that
        URL) or None; at most one retry in all."""
        self._observe(request, response, token)
        answered = _answered_url(request, response)
        if origin(answered) != origin(str(request.url)):
            return None  # redirected to another origin: its challenges are not about the token or proof we sent
        challenge = response.headers.get("WWW-Authenticate")
        status = response.status_code
        if token.is_dpop and answered != str(request.url) and is_dpop_refusal(status, challenge):
            # httpx followed a redirect on this origin with the proof made for the first URL (an auth flow never
            # sees a redirect before it is sent), and the target refused it (htu, RFC 9449 §4.3): the token is
            # fine, the proof is not.
            return "redirected"
        if token.is_dpop and is_resource_nonce_challenge(status, challenge, response.headers.get("DPoP-Nonce")):
            return "nonce"
        if is_invalid_token(status, challenge) or (token.is_dpop and is_dpop_invalid_token(status, challenge)):
            return "stale"
        return None

    async def _token_for(self, stale: Token | None) -> Token:
        if self._is_async:
            return await cast(Awaitable[Token], self._get_token(stale=stale))
        token = self._peek() if self._peek is not None and stale is None else None
        if token is None:
            renewed: Token = await _in_thread(functools.partial(self._get_token, stale=stale))
            return renewed
        return token

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source!r})"


def _add_cookies_set_by(response: httpx.Response, retry: httpx.Request) -> None:
    """The cookies the rejected response set go with the retry, as a browser would send them (httpx's own
    ``DigestAuth`` does so too). The client stores them in its jar but does not rebuild the ``Cookie`` header of
    a request an auth flow re-sends."""
    if not response.cookies:
        return
    probe = httpx.Request(retry.method, retry.url)
    response.cookies.set_cookie_header(probe)
    fresh = probe.headers.get("Cookie")
    if fresh:
        retry.headers["Cookie"] = merge_cookie_header(retry.headers.get("Cookie"), fresh)


def _answered_url(request: httpx.Request, response: httpx.Response) -> str:
    """The URL that gave ``response``: with ``follow_redirects``, the redirect's target, not ``request``'s."""
    try:
        return str(response.request.url)
    except RuntimeError:  # a response built without its request (a test double)
        return str(request.url)


async def _in_thread(call: Callable[[], T]) -> T:
    # Imported here: sync-only users never load anyio's thread machinery (anyio ships with httpx).
    import anyio.to_thread

    return await anyio.to_thread.run_sync(call)
