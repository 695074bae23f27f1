"""The one place that does HTTP (C3, C27, C32).

Timeouts on every request, one pooled session, proxies and ``verify`` applied to every call, no redirects on
POST, bodies capped without reading a huge one into memory, transport failures mapped to typed errors, and
log lines that carry no secrets. Everything network-bound in tokensmith goes through ``Transport``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
import urllib3

from ._protocol.messages import NOT_DECODED, HttpRequest, HttpResponse
from ._protocol.urls import check_endpoint
from ._version import __version__
from .exceptions import (
    ConnectError,
    InvalidEndpointError,
    RequestTimeout,
    ResponseTooLarge,
    TLSError,
    TransportError,
)

logger = logging.getLogger("tokensmith.http")

#: (connect, read) seconds. The seed module had none: a dead IdP hung the caller forever.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 30.0)
#: Token responses are a few KiB; anything past this is not a token response.
DEFAULT_MAX_BODY = 1024 * 1024
USER_AGENT = f"tokensmith/{__version__}"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

Timeout = float | tuple[float, float]
Verify = bool | str | None


def safe_url(url: str) -> str:
    """The URL without query or fragment, for messages and logs."""
    try:
        p = urlsplit(url)
        return urlunsplit((p.scheme, p.netloc.rpartition("@")[2], p.path, "", ""))
    except ValueError:
        return "<unparsable URL>"


class _SessionPool:
    """One lazily created session per factory. Keyed by the factory's identity so that a test suite that
    patches ``requests.Session`` gets its double, not a session cached before the patch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._factory: object = None
        self._session: Any = None

    def get(self, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if self._session is None or self._factory is not factory:
                self._factory, self._session = factory, factory()
            return self._session


_pool = _SessionPool()


def pooled_session(factory: Callable[[], Any] | None = None) -> Any:
    """The process-wide connection pool used when a caller passes no session."""
    return _pool.get(factory or requests.Session)


class Transport:
    """Sends ``HttpRequest``s. Cheap to construct: the session (and its pool) is what is expensive."""

    def __init__(
        self,
        session: Any = None,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_body: int = DEFAULT_MAX_BODY,
        proxies: Mapping[str, str] | None = None,
        verify: Verify = None,
        allow_insecure_http: bool | None = None,
    ) -> None:
        self.session = session if session is not None else pooled_session()
        self.timeout = timeout
        self.max_body = max_body
        self.proxies = dict(proxies) if proxies else None
        self.verify = verify
        self.allow_insecure_http = allow_insecure_http
        self._user_agent = self._pick_user_agent()

    def _pick_user_agent(self) -> str | None:
        # Respect a caller's own User-Agent; replace only requests' default one.
        headers = getattr(self.session, "headers", None)
        current = headers.get("User-Agent") if isinstance(headers, Mapping) else None
        if isinstance(current, str) and current and not current.startswith("python-requests"):
            return None
        return f"{USER_AGENT} {current}" if isinstance(current, str) and current else USER_AGENT

    def post(self, request: HttpRequest) -> HttpResponse:
        """POST a form. Redirects are returned, never followed (RFC 9700 §4.12)."""
        headers = {"Content-Type": FORM_CONTENT_TYPE, **request.headers}
        # Encoded here (UTF-8, RFC 6749 App. B): one urlencode instead of requests' per-call type probing.
        return self._send("POST", request.url, headers, urlencode(request.form).encode("ascii"))

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """GET (metadata discovery). Redirects are not followed either: an issuer must answer itself."""
        return self._send("GET", url, {"Accept": "application/json", **(headers or {})})

    def _send(self, method: str, url: str, headers: dict[str, str], data: bytes | None = None) -> HttpResponse:
        """Every request: endpoint policy first, then the same timeout, proxies, ``verify``, User-Agent,
        no redirects, and a streamed body read under the cap."""
        check_endpoint(url, allow_insecure=self.allow_insecure_http)
        if self._user_agent:
            headers.setdefault("User-Agent", self._user_agent)
        kwargs: dict[str, Any] = {"headers": headers, "timeout": self.timeout, "allow_redirects": False, "stream": True}
        if data is not None:
            kwargs["data"] = data
        if self.proxies:
            kwargs["proxies"] = self.proxies
        if self.verify is not None:
            kwargs["verify"] = self.verify
        shown = safe_url(url)
        started = time.monotonic()
        try:
            # session.post / session.get by name: test doubles of the seed's users stub exactly these.
            raw = getattr(self.session, method.lower())(url, **kwargs)
            response = self._read(raw, shown)
        except requests.exceptions.RequestException as exc:
            raise _map_transport_error(exc, method, shown, self.timeout) from exc
        logger.debug(
            "%s %s -> HTTP %s, %d bytes, %.0f ms",
            method,
            shown,
            response.status_code,
            len(response.body),
            (time.monotonic() - started) * 1000,
        )
        return response

    def _read(self, raw: Any, shown: str) -> HttpResponse:
        if not isinstance(raw, requests.Response):
            return _from_test_double(raw)
        complete = False
        try:
            headers = {k.lower(): v for k, v in raw.headers.items()}
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body:
                raise ResponseTooLarge(
                    f"{shown} announced a {declared}-byte body, over the {self.max_body}-byte cap",
                    status_code=raw.status_code,
                )
            # One bounded read: at most cap+1 bytes ever reach memory, whatever the server sends.
            body = raw.raw.read(self.max_body + 1, decode_content=True)
            if len(body) > self.max_body:
                raise ResponseTooLarge(
                    f"{shown} sent a body over the {self.max_body}-byte cap; stopped reading",
                    status_code=raw.status_code,
                )
            complete = True
            return HttpResponse(raw.status_code, headers, body, received_at=time.time())
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as error:
            raise requests.exceptions.ReadTimeout(str(error)) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise requests.exceptions.ConnectionError(str(error)) from error
        finally:
            if complete:
                raw.raw.release_conn()  # fully read: the connection goes back to the pool
            else:
                raw.close()  # anything else: drop the connection, never reuse a half-read one

    def close(self) -> None:
        close = getattr(self.session, "close", None)
        if callable(close):
            close()


def _from_test_double(raw: Any) -> HttpResponse:
    """A response object that is not a ``requests.Response``: a caller's test double (``MagicMock`` with
    ``.ok``, ``.status_code``, ``.json()``). The seed module's users test that way; keep it working."""
    status = raw.status_code if isinstance(getattr(raw, "status_code", None), int) else None
    if status is None:
        status = 200 if getattr(raw, "ok", False) is True else 400
    try:
        obj = raw.json()
    except Exception:  # a double may raise anything; absent JSON is handled downstream
        obj = NOT_DECODED
    headers = getattr(raw, "headers", None)
    hdrs = {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {}
    text = getattr(raw, "content", b"")
    body = text if isinstance(text, bytes) and obj is NOT_DECODED else b""
    return HttpResponse(status, hdrs, body, json=obj, received_at=time.time())


def _map_transport_error(exc: Exception, method: str, shown: str, timeout: Timeout) -> Exception:
    if isinstance(exc, requests.exceptions.SSLError):
        return TLSError(f"{method} {shown}: TLS failed ({type(exc).__name__}); check the CA bundle or `verify`")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RequestTimeout(f"{method} {shown}: timed out connecting (timeout={timeout})", request_sent=False)
    if isinstance(exc, requests.exceptions.Timeout):
        return RequestTimeout(f"{method} {shown}: timed out (timeout={timeout})")
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return ConnectError(
            f"{method} {shown}: connection failed ({type(exc).__name__})",
            request_sent=False if _never_connected(exc) else None,
        )
    if isinstance(
        exc, requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema | requests.exceptions.InvalidURL
    ):
        return InvalidEndpointError(f"{method} {shown}: not a usable URL ({type(exc).__name__})")
    return TransportError(f"{method} {shown}: {type(exc).__name__}")


def _never_connected(exc: BaseException) -> bool:
    """True when the chain shows the TCP connection was never made (refused, unresolvable)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError):
            return True
        if isinstance(seen, urllib3.exceptions.MaxRetryError):
            seen = seen.reason
            continue
        arg = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = arg or seen.__cause__ or seen.__context__
    return False
