"""Use tokensmith tokens with HTTP clients: ``requests`` and ``httpx`` auth handlers.

The handlers live in their own modules so that importing this package never imports an HTTP library:

- :class:`tokensmith.integrations.requests_auth.TokenAuth`, a ``requests.auth.AuthBase``;
- :class:`tokensmith.integrations.httpx_auth.TokenAuth`, an ``httpx.Auth`` (the ``httpx`` extra).

:mod:`tokensmith.integrations.flytekit` is of another kind: ``install()`` makes flytekit's
``flytekit.clients.auth.token_client`` and auth exception classes tokensmith's (see that module).

Both wrap a :class:`TokenSource` (a ``tokensmith.client.TokenClient`` is one) and follow RFC 6750:

- C11: the token travels only in ``Authorization: Bearer <b64token>``. ``Token`` validates the b64token syntax
  when it is built, so no header injection (CR/LF) can come from a token.
- C25 (RFC 9700 §4.3.2): a token is never put in a URI query parameter.
- C12 (RFC 6750 §3, §3.1): a ``401`` whose ``WWW-Authenticate`` carries a ``Bearer`` challenge with
  ``error="invalid_token"`` means the token was expired, revoked or malformed: tell the source it is stale
  (``get_token(stale=token)``), then re-send the request **once** with the new token. Anything else (a ``401``
  without ``error``, ``invalid_request``, a ``403`` ``insufficient_scope``) goes back to the caller untouched,
  with no renewal.

What propagates to the caller of ``session.get(...)``: exactly what ``source.get_token()`` raises. With a
``TokenClient`` that is ``LoginRequired`` when no token can be had without a person (after an ``invalid_grant``,
with the ``InvalidGrant`` chained as ``__cause__``), a transient ``TransportError`` or ``InvalidResponse`` only
when the current token has already expired (a still-valid token is used while renewal fails), and the server's
verdicts (``InvalidClient``, ...) as ``OAuthError`` subclasses. The ``WWW-Authenticate`` parser lives in the
protocol core (``tokensmith._protocol.www_authenticate``); its helpers are re-exported here.
"""

from __future__ import annotations

from typing import Protocol

from .._protocol.www_authenticate import TOKEN68, bearer_error, is_invalid_token, parse_www_authenticate
from ..token import Token

__all__ = [
    "TOKEN68",
    "AsyncTokenSource",
    "TokenSource",
    "bearer_error",
    "is_invalid_token",
    "parse_www_authenticate",
]


class TokenSource(Protocol):
    """Where the auth handlers get tokens. ``tokensmith.client.TokenClient`` implements it.

    ``get_token()`` returns a usable token, renewing it first if needed. With a fresh token cached it must be
    fast (a few attribute reads and one ``time.time()``): the handlers call it on every request.

    ``get_token(stale=t)`` means "a resource server rejected ``t``" (C12). The source renews unless its current
    token is already a different one, so N concurrent ``401`` s for the same token cause a single renewal; the
    single-flight is the source's job, the handlers only pass the exact token they sent.

    Either call may raise ``tokensmith.TokensmithError`` subclasses (``LoginRequired`` when the refresh token
    is dead and the user must log in again, a transient ``TransportError`` once the token has expired...); the
    handlers let them propagate (see the module docstring).

    Optional optimisation, looked up with ``getattr``: ``peek() -> Token | None`` returns the cached token if it
    is fresh *now*, else ``None``, without network I/O and without waiting on a lock another thread may hold
    during a renewal. The async httpx flow calls ``peek()`` on the event loop and only falls back to
    ``get_token()`` in a worker thread (which may block on network I/O) when it returns ``None``.
    """

    def get_token(self, *, stale: Token | None = None) -> Token: ...


# DPoP (RFC 9449): a source that hands out DPoP tokens (``token.is_dpop``) must also offer
# ``dpop_headers(method, url, token) -> dict`` (the ``Authorization: DPoP`` header and a fresh proof) and
# ``update_dpop_nonce(url, nonce)``; ``TokenClient`` and ``AsyncTokenClient`` do (both without I/O). The handlers
# then send the proof, remember each resource's ``DPoP-Nonce`` and answer its ``use_dpop_nonce`` challenge once.


def dpop_headers_from(source: object, method: str, url: str, token: Token) -> dict[str, str]:
    """The DPoP headers for one request from ``source``; a ``DPoPError`` (never a bare ``AttributeError``) when
    a source that hands out DPoP tokens cannot make proofs: sending the token as Bearer would only be refused."""
    make = getattr(source, "dpop_headers", None)
    if not callable(make):
        from ..exceptions import DPoPError

        raise DPoPError(
            f"{type(source).__name__} handed out a DPoP-bound token but has no dpop_headers(method, url, token) "
            "to make its proofs (RFC 9449 §7); use a tokensmith.TokenClient with dpop=..."
        )
    headers: dict[str, str] = make(method, url, token)
    return headers


def note_dpop_nonce(source: object, url: str, nonce: str) -> None:
    """Pass a resource's ``DPoP-Nonce`` (RFC 9449 §9) to ``source``, if it keeps nonces."""
    update = getattr(source, "update_dpop_nonce", None)
    if callable(update):
        update(url, nonce)


def merge_cookie_header(sent: str | None, fresh: str) -> str:
    """The ``Cookie`` header for a retry: the one ``sent`` with the rejected request, with the cookies in
    ``fresh`` (the client's cookies for the URL, including those the ``401`` set) added or replacing those of the
    same name, as a browser would send them after the ``Set-Cookie``. Cookies only in ``sent`` (a header the caller
    set by hand) are kept."""
    pairs: dict[str, str] = {}
    for part in [*(sent or "").split(";"), *fresh.split(";")]:
        pair = part.strip()
        name = pair.partition("=")[0].strip()
        if name:
            pairs[name] = pair
    return "; ".join(pairs.values())


class AsyncTokenSource(Protocol):
    """The async twin of ``TokenSource`` (``tokensmith.AsyncTokenClient`` implements it), for
    ``httpx.AsyncClient``: ``await get_token()``, same meaning of ``stale``."""

    async def get_token(self, *, stale: Token | None = None) -> Token: ...
