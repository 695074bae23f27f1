"""``httpx`` auth handler (the ``httpx`` extra): ``httpx.Client(auth=TokenAuth(client))``, sync or async.

Same rules as the ``requests`` handler: ``Authorization: Bearer <token>`` (C11, never in the URL, C25); on a
``401`` with ``WWW-Authenticate: Bearer error="invalid_token"`` (C12) report the token stale once and re-send
once. The async flow never blocks the event loop on a renewal: see :meth:`TokenAuth.async_auth_flow`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Generator

import httpx

from ..token import Token
from . import TokenSource, is_invalid_token

__all__ = ["TokenAuth"]


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

    def __init__(self, source: TokenSource) -> None:
        self._source = source
        self._get_token = source.get_token
        peek = getattr(source, "peek", None)
        self._peek: Callable[[], Token | None] | None = peek if callable(peek) else None

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()  # requires_request_body: overriding this method means honouring it here (a no-op for bytes)
        token = self._get_token()
        request.headers["Authorization"] = token.authorization
        response = yield request
        if is_invalid_token(response.status_code, response.headers.get("WWW-Authenticate")):
            token = self._get_token(stale=token)
            request.headers["Authorization"] = token.authorization
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """As :meth:`sync_auth_flow`, without blocking the event loop.

        ``source.get_token()`` may do network I/O (a renewal) and take a thread lock, so it runs in a worker
        thread (``anyio.to_thread.run_sync``; works under asyncio and trio). When the source offers the optional
        non-blocking ``peek()`` and it returns a fresh cached token, that token is used inline with no thread
        hop. The stale-token renewal after a ``401`` always runs in a worker thread.
        """
        await request.aread()  # requires_request_body (a no-op for bytes bodies)
        token = self._peek() if self._peek is not None else None
        if token is None:
            token = await _in_thread(self._get_token)
        request.headers["Authorization"] = token.authorization
        response = yield request
        if is_invalid_token(response.status_code, response.headers.get("WWW-Authenticate")):
            token = await _in_thread(functools.partial(self._get_token, stale=token))
            request.headers["Authorization"] = token.authorization
            yield request

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source!r})"


async def _in_thread(call: Callable[[], Token]) -> Token:
    # Imported here: sync-only users never load anyio's thread machinery (anyio ships with httpx).
    import anyio.to_thread

    return await anyio.to_thread.run_sync(call)
