"""Browser login: authorization code + PKCE, the redirect caught on a loopback listener (RFC 6749 §4.1, RFC 7636,
RFC 8252 §7.3, RFC 9207).

The protocol rules live in the sans-IO core (``_protocol.authorization``, ``_protocol.pkce``); this module drives
them with a socket, a browser, a clock and the transport, and mirrors ``tokensmith.device``: it never prints, the
caller gets a ``BrowserPrompt`` through ``on_prompt`` (the link to show) before the wait starts, the wait is bounded
by ``login_timeout`` and can be cancelled from another thread, and the result is a ``Token``.

Where the person is:

- a browser can be opened here (``can_open_browser()``): the listener catches the redirect; ``open_browser``
  (default: the standard ``webbrowser`` module, which respects ``BROWSER``) opens the link;
- no browser here (SSH, no display): **paste mode** (``paste=``) prints the link, and the person pastes back the
  address the browser was sent to (kubelogin's ``authcode-keyboard``, oidc-agent); or the device flow.

Nothing secret (code, verifier, state, nonce, token) appears in a log line, an exception message or the pages the
listener serves. The authorization URL carries the ``state``: it is shown to the person, who needs it, and
nowhere else.
"""

from __future__ import annotations

import contextlib
import errno
import html
import logging
import math
import os
import secrets
import selectors
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

from ._protocol.authorization import (
    LOGIN_OCTETS,
    AuthorizationRequest,
    AuthorizationResponse,
    LoginSecrets,
    LoopbackRedirect,
    authorization_code_token_request,
    authorization_request,
    check_authorization_endpoint,
    check_id_token_nonce,
    parse_authorization_response,
    parse_loopback_redirect_uri,
)
from ._protocol.client_auth import ClientAuth
from ._protocol.params import ScopeInput
from ._protocol.token import parse_token_response
from ._protocol.urls import is_loopback_host
from ._retry import RetryPolicy
from ._threads import start_daemon
from ._transport import HttpSender, Timeout, Transport
from ._warnings import log_protocol_warnings
from .exceptions import (
    BrowserLoginCancelled,
    BrowserLoginTimeout,
    IssuerMismatch,
    LoopbackListenerError,
    OAuthError,
    RedirectPortInUse,
    StateMismatch,
    TokensmithError,
    TransportError,
)
from .token import Token

logger = logging.getLogger("tokensmith.browser")

__all__ = [
    "DEFAULT_LOGIN_TIMEOUT",
    "BrowserPrompt",
    "LoopbackListener",
    "browser_login",
    "can_open_browser",
    "open_in_browser",
]

#: How long a browser login waits for the redirect when no ``login_timeout`` is given (seconds).
DEFAULT_LOGIN_TIMEOUT = 600.0
#: How often a waiting login looks at its ``cancel`` event (an arriving redirect wakes it at once).
CANCEL_POLL = 0.05
#: How long the listener's answering connection waits for the outcome of the code exchange, to show it.
FINAL_PAGE_WAIT = 120.0
#: An idle connection to the listener (a browser's speculative pre-connect) is dropped after this long.
CONNECTION_TIMEOUT = 10.0

T = TypeVar("T")


# --- where the person is ----------------------------------------------------------------------------------------


def can_open_browser(environ: Mapping[str, str] | None = None, *, platform: str = sys.platform) -> bool:
    """True when a browser opened from here would appear in front of the person: ``BROWSER`` is set (the person
    said how to open links; VS Code's remote sessions set it to reach the local browser, even over SSH), or there
    is a local display and the session is not over SSH (``tokensmith.cli.presenter.has_local_display``). For
    ``flow="auto"``: where this is False, use the device flow if the server has it, else paste mode."""
    from .cli.presenter import has_local_display

    env = os.environ if environ is None else environ
    if env.get("BROWSER"):
        return True
    return has_local_display(env, platform)


def may_open(url: str) -> bool:
    """The one rule for handing a link to a browser: ``https://``, or ``http://`` to a loopback host, printable
    ASCII, nothing a browser command could take for an option (``tokensmith.cli.presenter.may_open_in_browser``)."""
    from .cli.presenter import may_open_in_browser

    return may_open_in_browser(url)


def open_in_browser(url: str) -> bool:
    """Open ``url`` with the standard ``webbrowser`` module (which respects ``BROWSER``) in a new tab; False when
    the link may not be opened (anything but https, or http to loopback: C24) or no browser could be started."""
    if not may_open(url):
        logger.warning("not opening a link that is neither https:// nor http:// to this computer")
        return False
    import webbrowser

    try:
        return bool(webbrowser.open(url, new=2))
    except Exception as error:  # a missing or broken browser must never end the login: the link was shown
        logger.debug("could not open a browser: %s", type(error).__name__)
        return False


# --- the prompt ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowserPrompt:
    """What the person must see before the wait: the link to open (show it even when a browser is being opened:
    it may not appear) and, in paste mode, that they must paste back the address their browser lands on.

    ``url`` carries the login's ``state``: show it to the person, never log it (it is left out of ``repr``)."""

    url: str = field(repr=False)
    #: Where the server will send the browser (``http://127.0.0.1:<port>/callback`` by default).
    redirect_uri: str
    #: True when a browser is being opened with ``url`` (it may still fail to appear).
    browser: bool
    #: Paste mode: nothing listens on ``redirect_uri``; the person copies the address the browser shows (an error
    #: page: "this site can't be reached") and pastes it back.
    paste: bool
    #: How long the login waits, in seconds, and until when (wall clock), for display.
    expires_in: float
    expires_at: float


# --- the loopback listener ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultPage:
    """A page the listener serves: a status, a title and one paragraph (plain text, escaped when served)."""

    status: int
    title: str
    message: str

    def render(self) -> bytes:
        title, message = html.escape(self.title), html.escape(self.message)
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">'
            f"<title>{title}</title></head>\n"
            '<body style="font-family: system-ui, sans-serif; max-width: 36em; margin: 4em auto; line-height: 1.5">'
            f"<h1>{title}</h1>\n<p>{message}</p>\n</body></html>\n"
        ).encode()


SIGNED_IN = ResultPage(200, "Signed in", "You are signed in. You can close this tab and return to the application.")
REFUSED = ResultPage(
    400,
    "Not this sign-in",
    "This response does not belong to the sign-in in progress (its state does not match), so it was ignored. "
    "If you started a new sign-in, use the link it showed.",
)
ALREADY_DONE = ResultPage(
    400, "Sign-in already answered", "This sign-in has already received its answer. Return to the application."
)
NOT_FOUND = ResultPage(404, "Not found", "Nothing here.")
NOT_ALLOWED = ResultPage(405, "Method not allowed", "Only the sign-in redirect (GET) is served here.")
MISDIRECTED = ResultPage(421, "Misdirected request", "This listener answers requests to this computer only.")
INTERRUPTED = ResultPage(
    500, "Sign-in interrupted", "The application stopped before the sign-in finished. Return to it for details."
)


def failure_page(error: BaseException) -> ResultPage:
    """What the browser shows when the login failed after the redirect: the OAuth error code and description
    (scrubbed of the code and state by the parser), never a secret."""
    if isinstance(error, OAuthError):
        detail = f"The authorization server answered: {error.error}"
        if error.error_description:
            detail += f" ({error.error_description})"
    elif isinstance(error, IssuerMismatch):
        detail = "The answer came from an unexpected authorization server (RFC 9207), so it was not used."
    elif isinstance(error, TransportError):
        detail = "The authorization server could not be reached to finish the sign-in."
    else:
        detail = "The authorization server's answer could not be used."
    return ResultPage(400, "Sign-in failed", f"{detail}. Return to the application for details.")


class _Handler(BaseHTTPRequestHandler):
    """One request to the listener. HTTP/1.0: every connection closes after its answer."""

    server: _Server
    timeout = CONNECTION_TIMEOUT
    server_version = "tokensmith"
    sys_version = ""

    def do_GET(self) -> None:
        self.server.listener._handle(self)

    def do_POST(self) -> None:
        self.send_page(NOT_ALLOWED)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def do_HEAD(self) -> None:
        self.send_page(NOT_ALLOWED, body=False)

    def send_page(self, page: ResultPage, *, body: bool = True) -> None:
        payload = page.render()
        try:
            self.send_response(page.status)
            for name, value in (
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"),
                ("Pragma", "no-cache"),
                ("Referrer-Policy", "no-referrer"),
                ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
                ("X-Content-Type-Options", "nosniff"),
                ("X-Frame-Options", "DENY"),
                ("Connection", "close"),
            ):
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(payload)
        except OSError:  # the browser went away; nothing to tell it
            logger.debug("browser login: the browser closed the connection before the page was sent")

    def log_message(self, format: str, *args: Any) -> None:
        """Never: the request line carries the code and the state (and a library never writes to stderr)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """See ``log_message``."""


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    # SO_REUSEADDR lets a fixed port be bound again while the last login's connections are in TIME_WAIT; on
    # Windows it would let another program take the port over, so it stays off there.
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, listener: LoopbackListener, host: str, port: int) -> None:
        self.listener = listener
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler, bind_and_activate=False)
        try:
            if self.address_family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        self.listener._track(conn, add=True)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        self.listener._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        logger.debug("browser login: a connection to the listener failed: %s", type(error).__name__)


@dataclass
class _Answer(Generic[T]):
    value: T | None = None
    error: BaseException | None = None


_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}
_UNAVAILABLE = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, getattr(errno, "EPFNOSUPPORT", errno.EAFNOSUPPORT)}


class LoopbackListener:
    """A one-shot HTTP listener for the redirect, on loopback only (RFC 8252 §7.3, §8.3).

    Binds at construction (so a taken fixed port is known before anything is opened or sent): the redirect URI's
    literal address, or both 127.0.0.1 and ::1 for ``localhost``, on its fixed port or a free one
    (``redirect_uri`` then has it). ``wait(accept, ...)`` serves requests until one is *the* answer: each request
    to the redirect path is given to ``accept`` (with its query); a ``StateMismatch`` refuses that request (a page
    says so) and the wait goes on; anything else ``accept`` returns or raises is the answer. Every other request
    (another path, another method, a non-loopback ``Host``, anything after the answer) is refused and changes
    nothing. The answering browser is kept waiting until ``finish(page)`` says how the login ended; ``close()``
    stops listening. Use as a context manager.
    """

    def __init__(self, redirect_uri: str | LoopbackRedirect | None = None) -> None:
        self.redirect = (
            redirect_uri if isinstance(redirect_uri, LoopbackRedirect) else parse_loopback_redirect_uri(redirect_uri)
        )
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._answered = threading.Event()
        self._armed = threading.Event()
        self._final = threading.Event()
        self._final_page: ResultPage = INTERRUPTED
        self._accept: Callable[[str], Any] | None = None
        self._waiting = False
        self._answer: _Answer[Any] | None = None
        self._answer_thread: threading.Thread | None = None
        self._closed = False
        #: Requests refused because their ``state`` did not match (a count, for tests and diagnostics).
        self.refused = 0
        #: Every other request that was turned away (wrong path or method, after the answer, ...).
        self.ignored = 0
        self._servers = self._bind()
        self.port = int(self._servers[0].server_address[1])
        self.redirect_uri = self.redirect.uri_for(self.port)
        # A select loop woken through a socket pair: close() takes effect at once (serve_forever would finish its
        # poll interval first, and the token would wait for it).
        self._wake_reader, self._wake_writer = socket.socketpair()
        # Ctrl-C must reach the caller waiting for the redirect, not these threads (nor their per-connection ones).
        self._threads = [start_daemon(self._serve, server, name="tokensmith-redirect") for server in self._servers]
        logger.debug("browser login: listening for the redirect on %s", self.redirect_uri)

    # -- binding -----------------------------------------------------------------------------------------------

    def _bind(self) -> list[_Server]:
        hosts, port = self.redirect.bind_hosts, self.redirect.port
        for _attempt in range(8):  # only a free port for a second address family can need another try
            servers: list[_Server] = []
            try:
                for index, host in enumerate(hosts):
                    chosen = port if port is not None else (servers[0].server_address[1] if servers else 0)
                    try:
                        servers.append(_Server(self, host, chosen))
                    except OSError as error:
                        if error.errno in _UNAVAILABLE and index > 0:
                            continue  # localhost's IPv6 half, on a machine without IPv6: IPv4 alone will do
                        raise
                return servers
            except OSError as error:
                for server in servers:
                    server.server_close()
                if error.errno in _IN_USE and port is None and servers:
                    continue  # the free IPv4 port is taken on IPv6: pick another
                raise self._bind_error(error, hosts, port) from error
        raise LoopbackListenerError("could not find a free port on both loopback addresses", host=hosts[0])

    def _bind_error(self, error: OSError, hosts: tuple[str, ...], port: int | None) -> LoopbackListenerError:
        where = " and ".join(f"[{h}]" if ":" in h else h for h in hosts) + (f" port {port}" if port else "")
        if error.errno in _IN_USE and port is not None:
            return RedirectPortInUse(
                f"the redirect URI's port {port} is already in use on {where} (another login, or another program); "
                "close it and try again, or register a loopback redirect URI without a fixed port (RFC 8252 §7.3)",
                host=hosts[0],
                port=port,
            )
        if error.errno in _UNAVAILABLE:
            return LoopbackListenerError(
                f"cannot listen on {where}: that loopback address is not available on this machine "
                "(no IPv6?); use http://127.0.0.1 in the redirect URI",
                host=hosts[0],
                port=port,
            )
        return LoopbackListenerError(
            f"cannot listen on {where} for the redirect: {error.strerror or type(error).__name__}",
            host=hosts[0],
            port=port,
        )

    # -- serving -----------------------------------------------------------------------------------------------

    def _serve(self, server: _Server) -> None:
        server.socket.setblocking(False)  # a connection reset between select and accept must not block accept
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._closed:
                for key, _events in selector.select():
                    if key.fileobj is self._wake_reader or self._closed:
                        return
                    try:
                        conn, address = server.get_request()
                    except OSError:
                        continue
                    try:
                        server.process_request(conn, address)  # a thread per connection (ThreadingMixIn)
                    except Exception:
                        server.handle_error(conn, address)
                        server.shutdown_request(conn)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _handle(self, request: _Handler) -> None:
        split = urlsplit(request.path)
        host = (request.headers.get("Host") or "").strip()
        if host and not _loopback_authority(host):
            self._ignore(request, MISDIRECTED, "a request for another host name")
            return
        if split.path != self.redirect.path:
            self._ignore(request, NOT_FOUND, "a request for another path")
            return
        self._armed.wait(CONNECTION_TIMEOUT)  # a redirect may beat wait() by a hair: it is kept, not refused
        with self._lock:
            accept = self._accept
            done = self._answer is not None or self._closed
        if done or accept is None:
            self._ignore(request, ALREADY_DONE, "a request after the answer")
            return
        answer: _Answer[Any] = _Answer()
        try:
            answer.value = accept(split.query)
        except StateMismatch as error:
            with self._lock:
                self.refused += 1
            logger.info("browser login: refused a redirect: %s", error)
            request.send_page(REFUSED)
            return
        except Exception as error:
            answer.error = error
        with self._lock:
            if self._answer is not None or self._closed:
                late = True
            else:
                late = False
                self._answer = answer
                self._answer_thread = threading.current_thread()
        if late:  # two answers raced: the first one counts
            self._ignore(request, ALREADY_DONE, "a request after the answer")
            return
        self._answered.set()
        self._final.wait(FINAL_PAGE_WAIT)
        request.send_page(self._final_page)

    def _ignore(self, request: _Handler, page: ResultPage, what: str) -> None:
        with self._lock:
            self.ignored += 1
        logger.debug("browser login: turned away %s (HTTP %d)", what, page.status)
        request.send_page(page)

    # -- the caller's side -------------------------------------------------------------------------------------

    def expect(self, accept: Callable[[str], Any]) -> None:
        """Arm the listener: from now on, requests to the redirect path go to ``accept`` (see the class), also
        before ``wait()`` is called. Call it before the link is shown or opened; ``wait`` does it otherwise."""
        with self._lock:
            if self._accept is not None and self._accept is not accept:
                raise RuntimeError("a LoopbackListener waits once")
            self._accept = accept
        self._armed.set()

    def wait(
        self,
        accept: Callable[[str], T],
        *,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> T:
        """Serve until a request to the redirect path is accepted (see the class), then return what ``accept``
        returned, or raise what it raised. ``BrowserLoginTimeout`` after ``timeout`` seconds,
        ``BrowserLoginCancelled`` when ``cancel`` is set (looked at every ``CANCEL_POLL`` seconds). A listener
        waits once; ``accept`` must be the one given to ``expect`` if that was called."""
        with self._lock:
            if self._waiting:
                raise RuntimeError("a LoopbackListener waits once")
            self._waiting = True
        self.expect(accept)
        deadline = None if timeout is None or math.isinf(timeout) else time.monotonic() + max(0.0, timeout)
        while True:
            slice_ = CANCEL_POLL if cancel is not None else None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                slice_ = remaining if slice_ is None else min(slice_, remaining)
            if slice_ is not None and slice_ <= 0:
                if self._answered.is_set():
                    break
                raise BrowserLoginTimeout(
                    f"no answer from the browser within {timeout:g} s; the listener on {self.redirect_uri} is closed"
                )
            if self._answered.wait(slice_):
                break
            if cancel is not None and cancel.is_set():
                raise BrowserLoginCancelled("browser login cancelled while waiting for the browser")
        answer = self._answer
        assert answer is not None
        if answer.error is not None:
            raise answer.error
        return cast(T, answer.value)

    def finish(self, page: ResultPage) -> None:
        """Show ``page`` to the browser that brought the answer (first call wins)."""
        with self._lock:
            if self._final.is_set():
                return
            self._final_page = page
        self._final.set()

    def close(self) -> None:
        """Stop listening: the answering browser gets its page (or "interrupted"), open connections are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            answering = self._answer_thread
        self._final.set()  # an answering browser still waiting gets INTERRUPTED unless finish() came first
        self._armed.set()  # a request waiting for wait() is turned away now
        if answering is not None and answering is not threading.current_thread():
            answering.join(timeout=2.0)  # let the page reach the browser before the connection is dropped
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")
        for thread in self._threads:
            thread.join(timeout=2.0)
        for server in self._servers:
            server.server_close()
        for end in (self._wake_reader, self._wake_writer):
            end.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        logger.debug("browser login: listener on %s closed", self.redirect_uri)

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LoopbackListener(redirect_uri={self.redirect_uri!r}, closed={self._closed})"


def _loopback_authority(host_header: str) -> bool:
    """A ``Host`` header naming this computer (a DNS-rebinding page would send its own name)."""
    try:
        hostname = urlsplit(f"//{host_header}").hostname
    except ValueError:
        return False
    return bool(hostname) and is_loopback_host(hostname or "")


# --- paste mode ---------------------------------------------------------------------------------------------------


class _PasteReader:
    """One call of a ``paste`` callable, in a daemon thread (it blocks on the person), whose answer goes to the
    login waiting for it. A login that ends first (timeout, cancel) leaves the reader blocked; the next login with
    the same ``paste`` adopts it rather than starting a second reader that would race it for the person's next
    line (the old one would take it and the new login would time out). An answer nobody waits for is dropped: it
    belongs to a login that is over."""

    def __init__(self, paste: Callable[[], str]) -> None:
        self.paste = paste
        self.waiter: tuple[threading.Event, _Answer[str]] | None = None

    def run(self) -> None:
        answer: _Answer[str] = _Answer()
        try:
            while True:
                text = self.paste()
                if not isinstance(text, str):
                    raise TypeError(f"paste() must return the pasted text, not {type(text).__name__}")
                if text.strip():  # a blank line is asked for again
                    answer.value = text
                    break
        except BaseException as error:
            answer.error = error
        with _paste_lock:
            if _pending_pastes.get(id(self.paste)) is self:
                del _pending_pastes[id(self.paste)]
            waiter, self.waiter = self.waiter, None
            if waiter is None:
                logger.debug("browser login: an answer pasted after its login ended was dropped")
                return
            waiter[1].value, waiter[1].error = answer.value, answer.error
            waiter[0].set()


_paste_lock = threading.Lock()
#: Readers still blocked in their ``paste`` callable, by ``id(paste)`` (each checks it is its own callable).
_pending_pastes: dict[int, _PasteReader] = {}


def _wait_for_paste(paste: Callable[[], str], *, timeout: float, cancel: threading.Event | None) -> str:
    """The pasted text (not blank), read by a ``_PasteReader`` so that the login's deadline and ``cancel`` still
    apply while the person has not answered."""
    done = threading.Event()
    result: _Answer[str] = _Answer()
    waiter = (done, result)
    with _paste_lock:
        reader = _pending_pastes.get(id(paste))
        adopt = reader is not None and reader.paste is paste and reader.waiter is None
        if not adopt:
            reader = _PasteReader(paste)
            _pending_pastes.setdefault(id(paste), reader)
        assert reader is not None
        reader.waiter = waiter
    if not adopt:
        start_daemon(reader.run, name="tokensmith-paste")
    try:
        deadline = None if math.isinf(timeout) else time.monotonic() + timeout
        while True:
            slice_ = CANCEL_POLL if cancel is not None else None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                slice_ = remaining if slice_ is None else min(slice_, remaining)
                if remaining <= 0 and not done.is_set():
                    raise BrowserLoginTimeout(f"nothing was pasted within {timeout:g} s")
            if done.wait(slice_):
                break
            if cancel is not None and cancel.is_set():
                raise BrowserLoginCancelled("browser login cancelled while waiting for the pasted address")
    finally:
        with _paste_lock:
            if reader.waiter is waiter:
                reader.waiter = None  # gone: a late answer is dropped, the reader waits for the next login
    if isinstance(result.error, EOFError):
        raise BrowserLoginCancelled("no address was pasted (end of input)") from result.error
    if result.error is not None:
        raise result.error
    assert result.value is not None
    return result.value


# --- the login ----------------------------------------------------------------------------------------------------


def browser_login(
    authorization_endpoint: str,
    token_endpoint: str,
    auth: ClientAuth,
    *,
    on_prompt: Callable[[BrowserPrompt], None],
    scope: ScopeInput = None,
    audience: str | None = None,
    resource: str | Iterable[str] | None = None,
    redirect_uri: str | None = None,
    prompt: str | None = None,
    login_hint: str | None = None,
    extra_params: Mapping[str, str] | None = None,
    open_browser: Callable[[str], object] | None = open_in_browser,
    paste: Callable[[], str] | None = None,
    cancel: threading.Event | None = None,
    login_timeout: float | None = None,
    timeout: Timeout | None = None,
    transport: HttpSender | None = None,
    issuer: str | None = None,
    iss_required: bool = False,
    accepted_token_types: Iterable[str] = ("bearer",),
    retry: RetryPolicy | None = None,
) -> Token:
    """Run a whole browser login and return the ``Token``.

    1. Listen on the loopback redirect URI (``redirect_uri``: None means ``http://127.0.0.1:<free port>/callback``;
       a URI with a port is used exactly, e.g. flytekit's ``http://localhost:53593/callback``), unless ``paste``
       is given (paste mode: nothing listens; with no ``redirect_uri`` a free port is picked).
    2. Build the authorization URL: PKCE S256, a fresh ``state``, a ``nonce`` when ``openid`` is in ``scope``,
       ``audience``/``resource``/``prompt``/``login_hint``/``extra_params`` passed through. The authorization
       endpoint must be https (or http to loopback): ``InsecureEndpointError`` otherwise, before anything happens.
    3. ``on_prompt(BrowserPrompt)`` (show the link), then ``open_browser(url)`` in a background thread (default:
       ``open_in_browser``; None: do not open), only for a link ``may_open`` allows.
    4. Wait for the redirect (or the pasted address) until ``login_timeout`` (default ``DEFAULT_LOGIN_TIMEOUT``;
       ``math.inf``: no limit) or ``cancel``. A redirect with a missing or wrong ``state`` is refused and the wait
       goes on; in paste mode a pasted address with the wrong ``state`` ends the login (``StateMismatch``).
       ``issuer`` enables the RFC 9207 ``iss`` check (required when ``iss_required``: pass the metadata's
       ``authorization_response_iss_parameter_supported``). Error redirects raise their typed error
       (``AccessDenied``, ``InteractionRequired``, ...).
    5. Exchange the code with the verifier: one token request (repeated only when it cannot have reached the
       server, ``retry``), bounded by the HTTP ``timeout`` (ignored when a ``transport`` is given). The listener's
       page then says how it ended, and the listener closes.

    Raises ``BrowserLoginTimeout``, ``BrowserLoginCancelled``, ``RedirectPortInUse`` (a fixed port is taken:
    nothing was opened or sent), ``StateMismatch``, ``IssuerMismatch``, the OAuth errors of the redirect or the
    token endpoint, or a transport error. ``KeyboardInterrupt`` passes through untouched (the listener is closed).
    """
    client_id = auth.client_id
    if not client_id:
        raise ValueError("a browser login needs a client_id (auth=NoClientAuth('my-client') for a public client)")
    if iss_required and issuer is None:
        raise ValueError("iss_required needs the issuer")
    if transport is None:
        transport = Transport() if timeout is None else Transport(timeout=timeout)
    check_authorization_endpoint(authorization_endpoint)  # C24, before anything listens or is shown
    check = getattr(transport, "check", None)
    if callable(check):
        check(token_endpoint)  # C24 for the token endpoint too, before the person is asked for anything
    wait_for = DEFAULT_LOGIN_TIMEOUT if login_timeout is None else float(login_timeout)
    if not wait_for >= 0:
        raise ValueError("login_timeout must be a number of seconds >= 0")
    started = time.monotonic()
    login = LoginSecrets.from_random(secrets.token_bytes(LOGIN_OCTETS))
    redirect = parse_loopback_redirect_uri(redirect_uri)
    listener = None if paste is not None else LoopbackListener(redirect)
    try:
        sent_redirect = listener.redirect_uri if listener is not None else redirect.uri_for(_free_port(redirect))
        request = authorization_request(
            authorization_endpoint,
            client_id,
            sent_redirect,
            login,
            scope=scope,
            audience=audience,
            resource=resource,
            prompt=prompt,
            login_hint=login_hint,
            extra_params=extra_params,
        )

        def accept(query: str) -> AuthorizationResponse:
            return parse_authorization_response(query, state=login.state, issuer=issuer, iss_required=iss_required)

        if listener is not None:
            listener.expect(accept)  # armed before the link is shown: a fast redirect is never turned away
        opening = open_browser is not None and may_open(request.url)
        on_prompt(
            BrowserPrompt(
                url=request.url,
                redirect_uri=sent_redirect,
                browser=opening,
                paste=paste is not None,
                expires_in=wait_for,
                expires_at=time.time() + wait_for,
            )
        )
        if opening and open_browser is not None:
            _open_in_background(open_browser, request.url)
        remaining = max(0.0, wait_for - (time.monotonic() - started))
        if listener is not None:
            response = listener.wait(accept, timeout=remaining, cancel=cancel)
        else:
            assert paste is not None
            response = accept(_wait_for_paste(paste, timeout=remaining, cancel=cancel))
        logger.info("browser login: authorization response received; exchanging the code")
        token = _exchange(
            transport,
            token_endpoint,
            auth,
            request,
            response,
            resource=resource,
            accepted_token_types=accepted_token_types,
            retry=retry,
        )
    except BaseException as error:
        if listener is not None:
            listener.finish(failure_page(error) if isinstance(error, TokensmithError) else INTERRUPTED)
        raise
    else:
        if listener is not None:
            listener.finish(SIGNED_IN)
    finally:
        if listener is not None:
            listener.close()
    logger.info("browser login: signed in")
    return token


def _exchange(
    transport: HttpSender,
    token_endpoint: str,
    auth: ClientAuth,
    request: AuthorizationRequest,
    response: AuthorizationResponse,
    *,
    resource: str | Iterable[str] | None,
    accepted_token_types: Iterable[str],
    retry: RetryPolicy | None,
) -> Token:
    exchange = authorization_code_token_request(
        token_endpoint,
        auth,
        response.code,
        redirect_uri=request.redirect_uri,
        code_verifier=request.secrets.pkce.verifier,
        resource=resource,
    )
    accepted = tuple(accepted_token_types)

    def call() -> Token:
        answer = parse_token_response(transport.post(exchange), exchange.secrets, accepted_token_types=accepted)
        log_protocol_warnings(answer.warnings)
        check_id_token_nonce(answer.id_token, request.nonce)
        return Token.from_response(answer)

    # A code is one-time: the request is repeated only when the server cannot have acted on it.
    return (retry or RetryPolicy()).run(call, replay_safe=False)


def _open_in_background(open_browser: Callable[[str], object], url: str) -> None:
    def run() -> None:
        try:
            if open_browser(url) is False:
                logger.info("browser login: no browser could be opened; the link was shown instead")
        except Exception as error:  # the link was shown; a failing opener must not end the login
            logger.warning("browser login: opening the browser failed: %s", type(error).__name__)

    threading.Thread(target=run, name="tokensmith-browser", daemon=True).start()


def _free_port(redirect: LoopbackRedirect) -> int:
    """Paste mode without a fixed port: a port nothing listens on (the browser shows an error page whose address
    the person copies). Picked by binding and releasing, so it is at least not a known service's port."""
    if redirect.port is not None:
        return redirect.port
    family = socket.AF_INET6 if ":" in redirect.bind_hosts[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((redirect.bind_hosts[0], 0))
        return int(probe.getsockname()[1])


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
BrowserPrompt.__module__ = "tokensmith"
