"""``requests`` auth handler: ``requests.get(url, auth=TokenAuth(client))``.

Every request gets ``Authorization: Bearer <token>`` from the :class:`~tokensmith.integrations.TokenSource`
(C11; never a URI query parameter, C25). A ``401`` with ``WWW-Authenticate: Bearer error="invalid_token"``
(C12) makes the handler report the token as stale, once, and re-send the request, once, with the new token; the
rejected response ends up in ``response.history``. Nothing else is retried.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urljoin, urlsplit

from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar, get_cookie_header
from requests.exceptions import UnrewindableBodyError
from requests.models import PreparedRequest, Response
from requests.sessions import SessionRedirectMixin
from requests.utils import requote_uri, rewind_body

from .._protocol.dpop import is_dpop_invalid_token, is_resource_nonce_challenge
from ..token import Token
from . import TokenSource, dpop_headers_from, is_invalid_token, merge_cookie_header, note_dpop_nonce

__all__ = ["TokenAuth"]

# Per-request state, kept on the PreparedRequest itself: the token it was sent with (the ``stale`` to report if
# the server rejects it; the source may have moved on by then) and whether it is already the one retry.
_SENT_TOKEN = "_tokensmith_token"
_IS_RETRY = "_tokensmith_retry"
#: How many Bearer tokens a handler remembers having sent into a redirect (see ``TokenAuth._followed``).
_FOLLOWED_MAX = 8

# Untyped in the stubs; this is its signature.
_extract_cookies: Callable[[CookieJar, PreparedRequest, Any], None] = extract_cookies_to_jar
_cookie_header: Callable[[CookieJar, PreparedRequest], str | None] = get_cookie_header


def _replayable(request: PreparedRequest) -> bool:
    """Can the body be sent a second time? ``None``, ``bytes`` and ``str`` can; a file-like body can if
    ``requests`` recorded its start position (it then rewinds it, as for redirects); a generator or other
    iterator cannot: it was consumed by the first send."""
    body = request.body
    if body is None or isinstance(body, bytes | str):
        return True
    try:
        rewind_body(request)
    except UnrewindableBodyError:
        return False
    return True


class TokenAuth(AuthBase):
    """Bearer-token auth for ``requests``, backed by a :class:`~tokensmith.integrations.TokenSource`.

    >>> session.auth = TokenAuth(token_client)        # doctest: +SKIP

    - C11 (RFC 6750 §2.1): sets ``Authorization: Bearer <b64token>``; ``Token`` validated the b64token syntax
      when it was built, so the header cannot be used for injection.
    - C25 (RFC 9700 §4.3.2): the token is never put in the URL.
    - C12 (RFC 6750 §3.1): on a ``401`` whose ``WWW-Authenticate`` has a ``Bearer`` challenge with
      ``error="invalid_token"``, calls ``source.get_token(stale=<the token that was sent>)`` once and re-sends
      the request once, returning the new response with the rejected one in ``history``. A second rejection is
      returned as is (no loop). A ``401`` without ``error``, ``invalid_request`` and ``403 insufficient_scope``
      are returned untouched, without renewal.
    - A body that cannot be replayed (a generator or iterator, an unseekable stream) is not re-sent: the ``401``
      is returned. The source is still told the token is stale, so the *next* request uses a new token instead
      of failing the same way.
    - Errors from the source (``tokensmith.exceptions.TokensmithError`` subclasses, e.g. ``InvalidGrant`` when
      the user must log in again) propagate to the caller.

    The per-request path with a cached token is one ``source.get_token()`` call, one header assignment and one
    hook registration (the hook is bound once, here); the instance is safe to share between threads.
    """

    def __init__(self, source: TokenSource) -> None:
        if inspect.iscoroutinefunction(source.get_token):
            raise TypeError("an async token source (AsyncTokenClient) cannot serve requests; use a TokenClient")
        self._source = source
        # Bound once: attribute lookups on each request would allocate a new bound method every time.
        self._get_token = source.get_token
        self._hook = self._on_response
        # ``Authorization`` value -> Bearer token, for tokens sent with a request the session then redirected.
        # The session's copy of a redirected request keeps our hook and its ``Authorization`` (same host) but not
        # the per-request state: a 401 invalid_token there is found to be about one of our tokens by its header.
        self._followed: dict[str, Token] = {}
        self._followed_lock = threading.Lock()

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        token = self._get_token()
        if token._dpop:  # the attribute, not the property: this runs on every request
            self._dpop(r, token)
        else:
            r.headers["Authorization"] = token.authorization
        r.__dict__[_SENT_TOKEN] = token
        r.hooks["response"].append(self._hook)
        return r

    def _dpop(self, r: PreparedRequest, token: Token) -> None:
        """RFC 9449 §7.1: ``Authorization: DPoP <token>`` and a fresh proof for this method and URL, with ``ath``
        and the resource's latest nonce. A source that cannot make proofs must not be handed a DPoP token."""
        r.headers.update(dpop_headers_from(self._source, r.method or "GET", r.url or "", token))

    def _on_response(self, response: Response, **kwargs: Any) -> Response:
        """Response hook: the C12 renew-once, retry-once logic. ``kwargs`` are the original send arguments
        (timeout, verify, proxies, cert, stream), reused for the retry."""
        request = response.request
        sent: Token | None = request.__dict__.get(_SENT_TOKEN)
        nonce = response.headers.get("DPoP-Nonce")
        if sent is not None and sent.is_dpop and nonce is not None:
            note_dpop_nonce(self._source, request.url or "", nonce)  # RFC 9449 §9
        if response.is_redirect:
            if "DPoP" in request.headers:
                self._dpop_for_redirect(request, response, sent)
            elif sent is not None:
                self._remember(sent)
        if response.status_code != 401:
            return response
        if sent is None:
            sent = self._followed_token(request)
        if sent is None or request.__dict__.get(_IS_RETRY):
            return response  # not ours, or already the retry: hand the second 401 to the caller
        challenge = response.headers.get("WWW-Authenticate")
        # RFC 9449 §9: the resource wants a proof with its nonce: the same token, a new proof, once.
        wants_nonce = sent.is_dpop and is_resource_nonce_challenge(401, challenge, nonce)
        if not wants_nonce and not (
            is_invalid_token(401, challenge) or (sent.is_dpop and is_dpop_invalid_token(401, challenge))
        ):
            return response
        # A custom transport adapter may not say which connection answered; without one we cannot re-send.
        connection = getattr(response, "connection", None)
        replayable = _replayable(request)
        token = sent if wants_nonce else self._source.get_token(stale=sent)
        if connection is None or not replayable:
            return response

        # Consume and release the rejected response so the retry can reuse its connection.
        _ = response.content
        response.close()
        retry = request.copy()
        jar: CookieJar | None = vars(retry).get("_cookies")
        if jar is not None:  # cookies the 401 set, as a browser (and requests' own digest auth) would
            _extract_cookies(jar, request, response.raw)
            # Not ``prepare_cookies``: it (and the cookie jar) does nothing when the request already has a
            # ``Cookie`` header (any session cookie), and the 401's cookies would be lost.
            probe = retry.copy()
            probe.headers.pop("Cookie", None)
            fresh = _cookie_header(jar, probe)
            if fresh:
                retry.headers["Cookie"] = merge_cookie_header(retry.headers.get("Cookie"), fresh)
        if token.is_dpop:
            self._dpop(retry, token)
        else:
            retry.headers["Authorization"] = token.authorization
            retry.headers.pop("DPoP", None)
        retry.__dict__[_SENT_TOKEN] = token
        retry.__dict__[_IS_RETRY] = True
        # The adapter, not the session: no hooks are dispatched and no redirects followed here; the session
        # that called this hook still follows redirects of the response returned.
        new: Response = connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        if new.is_redirect:
            # The session builds the redirect of ``new`` from ``request`` (``resolve_redirects`` copies the request
            # it sent, not this retry, and this hook does not run on ``new``): make it carry the token the retry
            # carried, or the redirect target gets the rejected one (C12). The 401 keeps a copy as it was sent.
            response.request = request.copy()
            if token.is_dpop:
                self._dpop_for_redirect(request, new, token)
            else:
                request.headers["Authorization"] = token.authorization
                request.headers.pop("DPoP", None)
                # Not remembered: this call has had its one renewal; a 401 after that redirect is returned.
        return new

    def _remember(self, token: Token) -> None:
        """``token`` goes into a redirect the session will follow (its copy carries our hook, not our state)."""
        if token.is_dpop:
            return  # a DPoP redirect copy gets its proof from ``_dpop_for_redirect``; its 401 is returned as is
        with self._followed_lock:
            self._followed[token.authorization] = token
            while len(self._followed) > _FOLLOWED_MAX:
                del self._followed[next(iter(self._followed))]

    def _followed_token(self, request: PreparedRequest) -> Token | None:
        """The token a session's redirect copy of one of our requests carries, if it kept its ``Authorization``
        (requests strips it when the redirect goes to another host: then there is none, and no renewal)."""
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return None
        with self._followed_lock:
            return self._followed.get(authorization)

    def _dpop_for_redirect(self, request: PreparedRequest, response: Response, sent: Token | None) -> None:
        """The session builds the redirect from a copy of ``request``'s headers, after this hook: a proof is for
        one method and URL (RFC 9449 §4.2 htm, htu), so the copy gets a fresh proof for where it is going when
        the session keeps its ``Authorization`` (same host: a trailing-slash or http-to-https move), and none
        when the session strips ``Authorization`` (another host) or this request is itself a redirect's copy
        (the token it carries is no longer known here)."""
        hop = _next_hop(request, response) if sent is not None and sent.is_dpop else None
        if sent is None or hop is None:
            request.headers.pop("DPoP", None)
            return
        method, url = hop
        request.headers.update(dpop_headers_from(self._source, method, url, sent))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source!r})"


def _next_hop(request: PreparedRequest, response: Response) -> tuple[str, str] | None:
    """The method and URL the session will send the redirect of ``response`` to, if it keeps ``Authorization``
    there; worked out with the session's own rules (``requests.Session.resolve_redirects``: the Location as it
    decodes it, scheme-relative and relative forms, percent-encoding; ``rebuild_method``; ``should_strip_auth``)."""
    session = _redirect_rules()
    location = session.get_redirect_target(response)
    if not location or not request.url:
        return None
    if location.startswith("//"):
        location = f"{urlsplit(response.url).scheme}:{location}"
    url = requote_uri(location) if urlsplit(location).netloc else urljoin(response.url, requote_uri(location))
    strips_auth: Callable[[str, str], bool] = session.should_strip_auth  # untyped in the stubs
    if strips_auth(request.url, url):
        return None
    method = (request.method or "GET").upper()
    if (response.status_code in (302, 303) and method != "HEAD") or (response.status_code == 301 and method == "POST"):
        method = "GET"
    return method, url


@functools.cache
def _redirect_rules() -> SessionRedirectMixin:
    # Its redirect methods read nothing from the instance: one holder of the rules, made once.
    return SessionRedirectMixin()
