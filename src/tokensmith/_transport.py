"""The one place that does HTTP (C3, C27, C32).

Timeouts on every request *and a total deadline* (connect + headers + body: a server that trickles one byte a
second cannot hold a caller), one pooled session, proxies and ``verify`` applied to every call, no redirects,
never ``~/.netrc`` (it would silently replace the client's own credentials), bodies capped without reading a huge
one into memory, transport failures mapped to typed errors that are also the ``requests`` exceptions, and log
lines that carry no secrets. Everything network-bound in tokensmith goes through ``Transport``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests
import requests.adapters
import requests.auth
import urllib3

from ._http import (
    ALLOW_INSECURE_ENV,
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
    FORM_CONTENT_TYPE,
    USER_AGENT,
    EndpointPolicy,
    HttpSender,
    Timeout,
    Verify,
    body_too_large,
    check_declared_length,
    checked_verify,
    connect_message,
    credential_urls_secrets,
    deadline_message,
    exception_chain,
    insecure_http_allowed,
    log_exchange,
    safe_url,
    scrubbed_cause,
    tls_message,
    total_deadline,
    user_agent,
)
from ._protocol.messages import HttpRequest, HttpResponse
from ._redact import request_secrets
from ._requests_errors import connect_error, timeout_error, tls_error
from ._threads import start_daemon
from .exceptions import InvalidEndpointError, TransportError

__all__ = [
    "ALLOW_INSECURE_ENV",
    "DEFAULT_MAX_BODY",
    "DEFAULT_TIMEOUT",
    "FORM_CONTENT_TYPE",
    "USER_AGENT",
    "HttpSender",
    "Timeout",
    "Transport",
    "Verify",
    "insecure_http_allowed",
    "pooled_session",
    "safe_url",
    "total_deadline",
]

logger = logging.getLogger("tokensmith.http")


# --- abandoning a request that is still waiting for the response's head -------------------------------------
#
# A caller stops waiting at the total deadline, but the worker thread running the request is stuck in a socket read
# while a server trickles the status line and headers (http.client allows 64 KiB per header line: days, at a byte a
# second). There is no response object to close yet, so the process-wide session's adapters record the connection
# each exchange takes from the pool, and abandoning the exchange shuts that socket down: the read fails and the
# thread is free. Sessions callers bring keep their own adapters; there a stuck worker waits for the server.


class _RunningExchange(threading.local):
    exchange: _Exchange | None = None


_running = _RunningExchange()


class _TrackedPool:
    """Pool mixin: hands each connection it gives out to the exchange the calling worker runs."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        exchange = _running.exchange
        if exchange is not None:
            exchange.uses(conn)
        return conn


class _TrackedHTTPPool(_TrackedPool, urllib3.HTTPConnectionPool):
    pass


class _TrackedHTTPSPool(_TrackedPool, urllib3.HTTPSConnectionPool):
    pass


_TRACKED_POOLS = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class _AbortableAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, whose pools (direct and through an HTTP proxy) tell the exchange its connection."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _TRACKED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are urllib3's own subclasses: left as they are
            manager.pool_classes_by_scheme = _TRACKED_POOLS
        return manager


def _default_session() -> requests.Session:
    session = requests.Session()
    session.mount("https://", _AbortableAdapter())
    session.mount("http://", _AbortableAdapter())
    return session


def _shut_down(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        # Wakes a read blocked in another thread (close() would not). OSError: already closed, nothing waits on it.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _SessionPool:
    """One lazily created session per process, recreated if the factory changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._factory: object = None
        self._session: Any = None

    def get(self, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if self._session is None or self._factory is not factory:
                self._factory, self._session = factory, factory()
            return self._session

    def after_fork(self) -> None:
        """In a forked child: the parent's keep-alive connections are sockets the parent still uses. Sent on by
        both, a response meant for one process (a token, perhaps another client's) would be read by the other. The
        child's pooled session gets fresh connection pools; the inherited ones are left untouched (closing them
        could take a lock a parent thread held at the fork)."""
        self._lock = threading.Lock()
        session = self._session
        if isinstance(session, requests.Session):
            for prefix, adapter in list(session.adapters.items()):
                if type(adapter) in (requests.adapters.HTTPAdapter, _AbortableAdapter):  # the ones this pool made
                    session.adapters[prefix] = type(adapter)()


_pool = _SessionPool()


def pooled_session(factory: Callable[[], Any] | None = None) -> Any:
    """The process-wide connection pool used when a caller passes no session."""
    return _pool.get(factory or _default_session)


class _NoNetrc(requests.auth.AuthBase):
    """An explicit no-op ``auth``: with none, requests looks up ``~/.netrc`` for the host and its Basic
    credentials silently replace the client's own ``Authorization`` header."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


_NO_NETRC = _NoNetrc()


class _Workers:
    """Daemon threads that run requests, so a caller can stop waiting at its deadline. Reused (a thread per
    request cost ~4x more than the hand-off); a worker stuck on a hostile server just means one more is started;
    idle ones exit after a minute."""

    IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0  # workers waiting for a job
        self._pending = 0  # jobs submitted and not yet taken

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
            spawn = self._pending > self._idle
        self._jobs.put(job)
        if spawn:
            start_daemon(self._work, name="tokensmith-http")

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._pending <= self._idle:
                        return
                continue  # a job arrived as this worker timed out: it is this worker's
            with self._lock:
                self._idle -= 1
                self._pending -= 1
            job()


_workers = _Workers()


def _reset_workers_after_fork() -> None:  # pragma: no cover - runs in forked children
    global _workers
    _workers = _Workers()  # the parent's threads do not exist in the child
    _pool.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_workers_after_fork)


class _Exchange:
    """One request run on a worker thread, so the caller waits at most the total deadline whatever the server
    does (trickled headers, a stuck DNS lookup). If the caller gives up, the worker drops the connection as soon
    as it gets control back; it never hands a late response to anyone."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.abandoned = False
        self.result: HttpResponse | None = None
        self.error: BaseException | None = None
        self.raw: Any = None
        self.conn: Any = None
        self._lock = threading.Lock()

    def uses(self, conn: Any) -> None:
        """The connection this exchange took from the pool (see ``_TrackedPool``)."""
        with self._lock:
            self.conn = conn
            abandoned = self.abandoned
        if abandoned:
            _shut_down(conn)

    def adopt(self, raw: Any) -> bool:
        """Record the live response; False if the caller already gave up (then it is closed here)."""
        with self._lock:
            self.raw = raw
            abandoned = self.abandoned
        if abandoned:
            raw.close()
        return not abandoned

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            raw, conn = self.raw, self.conn
        if raw is None and conn is not None:
            _shut_down(conn)  # still waiting for the head: no response to close yet
        if raw is not None:
            try:
                raw.close()  # ends a body read in progress
            except Exception:  # closing a half-dead connection may fail in any way; it is being dropped anyway
                logger.debug("closing an abandoned response failed", exc_info=True)


class Transport(EndpointPolicy):
    """Sends ``HttpRequest``s. Cheap to construct: the session (and its pool) is what is expensive.

    ``timeout`` is requests-style (a number, or ``(connect, read)``) and also sets the total deadline of each
    request (``total_timeout``, default: the number, or connect + read).
    """

    def __init__(
        self,
        session: Any = None,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        total_timeout: float | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        proxies: Mapping[str, str] | None = None,
        verify: Verify = None,
        allow_insecure_http: bool | None = None,
    ) -> None:
        super().__init__(allow_insecure_http)
        self.session = session if session is not None else pooled_session()
        self.timeout = timeout
        self.total_timeout = total_deadline(timeout) if total_timeout is None else float(total_timeout)
        if not self.total_timeout > 0:
            raise ValueError("the total timeout must be a positive number of seconds")
        self.max_body = max_body
        self.proxies = dict(proxies) if proxies else None
        self.verify = checked_verify(verify)
        self._user_agent = self._pick_user_agent()

    @property
    def pool(self) -> Any:
        """The connection pool (the session): what the metadata cache is kept per."""
        return self.session

    def _pick_user_agent(self) -> str | None:
        # Respect a caller's own User-Agent; replace only requests' default one.
        headers = getattr(self.session, "headers", None)
        return user_agent(headers.get("User-Agent") if isinstance(headers, Mapping) else None, "python-requests")

    def post(self, request: HttpRequest) -> HttpResponse:
        """POST a form. Redirects are returned, never followed (RFC 9700 §4.12)."""
        headers = {"Content-Type": FORM_CONTENT_TYPE, **request.headers}
        # Encoded here (UTF-8, RFC 6749 App. B): one urlencode instead of requests' per-call type probing.
        body = urlencode(request.form).encode("ascii")
        return self._send("POST", request.url, headers, body, request_secrets(request.form, headers, request.secrets))

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """GET (metadata discovery). Redirects are not followed either: an issuer must answer itself."""
        return self._send("GET", url, {"Accept": "application/json", **(headers or {})})

    def _send(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None = None, secrets: tuple[str, ...] = ()
    ) -> HttpResponse:
        """Every request: endpoint policy first, then the same timeout, proxies, ``verify``, User-Agent,
        no redirects, no netrc, a streamed body read under the cap, all within the total deadline. A failure is
        ours, chained to a copy of requests' own exception that holds none of ``secrets`` (see ``scrubbed_cause``)."""
        self.check(url)
        if self._user_agent:
            headers.setdefault("User-Agent", self._user_agent)
        kwargs: dict[str, Any] = {"headers": headers, "timeout": self.timeout, "allow_redirects": False, "stream": True}
        if data is not None:
            kwargs["data"] = data
        if self.proxies:
            kwargs["proxies"] = self.proxies
        if self.verify is not None:
            kwargs["verify"] = self.verify
        if not getattr(self.session, "auth", None):
            kwargs["auth"] = _NO_NETRC
        shown = safe_url(url)
        started = time.monotonic()
        exchange = _Exchange()

        def run() -> None:
            _running.exchange = exchange
            try:
                # session.post / session.get by name: what users' own session subclasses override.
                raw = getattr(self.session, method.lower())(url, **kwargs)
                if exchange.adopt(raw):
                    exchange.result = self._read(raw, shown)
            except BaseException as error:  # handed to the caller, who re-raises it
                exchange.error = error
            finally:
                _running.exchange = None
                exchange.done.set()

        _workers.submit(run)
        if not exchange.done.wait(self.total_timeout):
            exchange.abandon()
            raise timeout_error(deadline_message(method, shown, self.total_timeout), connecting=False)
        if exchange.error is not None:
            error = exchange.error
            if isinstance(error, requests.exceptions.RequestException):
                failure = _map_transport_error(error, method, shown, self.timeout)
                session_proxies = getattr(self.session, "proxies", None)
                cause_secrets = credential_urls_secrets(
                    url, self.proxies, session_proxies if isinstance(session_proxies, Mapping) else None
                )
                raise failure from scrubbed_cause(
                    error, (*secrets, *cause_secrets), "requests.", requests.exceptions.RequestException
                )
            raise error
        response = exchange.result
        assert response is not None
        log_exchange(logger, method, shown, response, started)
        return response

    def _read(self, raw: Any, shown: str) -> HttpResponse:
        if not isinstance(raw, requests.Response):
            raise TypeError(
                f"the session returned a {type(raw).__name__}, not a requests.Response "
                "(test doubles of the seed module's users are adapted by tokensmith.token_client only)"
            )
        complete = False
        try:
            headers = {k.lower(): v for k, v in raw.headers.items()}
            check_declared_length(headers, self.max_body, shown, raw.status_code)
            # One bounded read: at most cap+1 bytes ever reach memory, whatever the server sends.
            body = raw.raw.read(self.max_body + 1, decode_content=True)
            if len(body) > self.max_body:
                raise body_too_large(self.max_body, shown, raw.status_code)
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


def _map_transport_error(exc: Exception, method: str, shown: str, timeout: Timeout) -> Exception:
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_error(tls_message(method, shown, type(exc).__name__))
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return timeout_error(f"{method} {shown}: timed out connecting (timeout={timeout})", connecting=True)
    if isinstance(exc, requests.exceptions.Timeout):
        return timeout_error(f"{method} {shown}: timed out (timeout={timeout})", connecting=False)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return connect_error(
            connect_message(method, shown, type(exc).__name__), request_sent=False if _never_connected(exc) else None
        )
    if isinstance(
        exc, requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema | requests.exceptions.InvalidURL
    ):
        return InvalidEndpointError(f"{method} {shown}: not a usable URL ({type(exc).__name__})")
    return TransportError(f"{method} {shown}: {type(exc).__name__}")


def _never_connected(exc: BaseException) -> bool:
    """True when the chain shows the TCP connection was never made (refused, unresolvable)."""
    never = urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError
    return any(isinstance(seen, never) for seen in exception_chain(exc, _wrapped))


def _wrapped(exc: BaseException) -> BaseException | None:
    """What urllib3 and requests wrap without chaining: a MaxRetryError's reason, an exception passed as args[0]."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return exc.reason
    return exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
Transport.__module__ = "tokensmith"
