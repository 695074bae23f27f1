"""A small fault-injecting HTTP/1.1 server for tests (loopback only).

It does what a real OAuth authorization server will not: scripted error
bodies, HTML 502 pages, HTTP-200 error bodies, huge bodies, hangs,
redirects, ``Retry-After`` headers and dropped connections.

Usage::

    from fault_server import FaultServer, Reply

    with FaultServer() as srv:
        srv.script("/token", Reply(status=503, headers={"Retry-After": "1"}),
                   Reply(json={"access_token": "abc", "token_type": "Bearer"}))
        ...  # point the client at srv.url("/token")
        assert srv.count("/token") == 2
        assert srv.recorded("/token")[0].form == [("grant_type", "client_credentials")]

Replies are served FIFO per path (the query string is ignored for routing);
when a path's queue is empty its default reply is used, otherwise a 404
``{"error": "not_found"}``. Every request is recorded, whatever the reply.

Or, in pytest, ``from fault_server import fault_server  # noqa: F401`` and take
the ``fault_server`` fixture (function scope, already started).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import json as _json
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, cast
from urllib.parse import parse_qsl, urlsplit

import pytest

__all__ = ["UNSET", "FaultServer", "Recorded", "Reply", "fault_server"]

_CHUNK: Final = 64 * 1024
_STREAM_BLOCK: Final = b"x" * _CHUNK
_MAX_REQUEST_BODY: Final = 16 * 1024 * 1024


class _Unset(enum.Enum):
    UNSET = enum.auto()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Sentinel: ``Reply.json`` was not given (``json=None`` means a JSON ``null`` body)."""


@dataclass(frozen=True)
class Reply:
    """One scripted response.

    ``json`` (serialised with :func:`json.dumps`) and ``body`` are mutually
    exclusive. ``stream_bytes > 0`` sends that many ``b"x"`` bytes in 64 KiB
    chunks instead of a body. ``omit_length`` sends no ``Content-Length`` and
    closes the connection after the body (close-delimited). A ``Content-Length``
    given in ``headers`` is sent verbatim (lying lengths allowed) and the
    connection is closed after the body. ``delay`` sleeps before anything is
    sent (interrupted by :meth:`FaultServer.stop`, which then drops the
    connection). ``hold`` is an event the reply waits for before anything is sent (after any ``delay``; also
    interrupted by :meth:`FaultServer.stop`): a request kept in flight for exactly as long as a test needs,
    whatever the machine's speed, where a ``delay`` is a guess. ``drop`` closes the connection without writing a
    byte.
    ``trickle > 0`` writes the whole response (status line and headers included) one byte every ``trickle``
    seconds: a per-read timeout never fires, only a total deadline does.
    """

    status: int = 200
    json: object = UNSET
    body: bytes | str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    stream_bytes: int = 0
    omit_length: bool = False
    drop: bool = False
    trickle: float = 0.0
    hold: threading.Event | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.json is not UNSET and self.body is not None:
            raise ValueError("Reply: give json= or body=, not both")
        if self.stream_bytes and (self.json is not UNSET or self.body is not None):
            raise ValueError("Reply: stream_bytes cannot be combined with json= or body=")
        if self.stream_bytes < 0 or self.delay < 0:
            raise ValueError("Reply: stream_bytes and delay must be >= 0")
        if not 100 <= self.status <= 999:
            raise ValueError(f"Reply: bad status {self.status}")

    def payload(self) -> bytes:
        """The body bytes for a non-streamed reply."""
        if self.json is not UNSET:
            return _json.dumps(self.json).encode("utf-8")
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body or b""

    def effective_content_type(self) -> str:
        if self.content_type is not None:
            return self.content_type
        if self.json is not UNSET:
            return "application/json"
        return "text/plain; charset=utf-8"


NOT_FOUND: Final = Reply(status=404, json={"error": "not_found"})


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it (recorded once its body is fully read)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    form: list[tuple[str, str]]  # x-www-form-urlencoded pairs, in order, repeats kept; else []
    at: float  # time.monotonic() when the request was fully read
    peer: tuple[str, int] = ("", 0)  # client (host, port): equal ports => same keep-alive connection


class _BadRequest(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    def __init__(self, owner: FaultServer, address: tuple[str, int]) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # No tracebacks on stderr; keep them for debugging instead.
        exc = sys.exc_info()[1]
        if exc is not None:
            self.owner._note_error(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-server/1"
    sys_version = ""

    # --- plumbing ---------------------------------------------------------

    @property
    def _owner(self) -> FaultServer:
        return cast(_Server, self.server).owner

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs add ~40 ms per
        # keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self._owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    # --- request ----------------------------------------------------------

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise _BadRequest("truncated chunked body")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise _BadRequest("bad chunk size") from exc
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                total += size
                if total > _MAX_REQUEST_BODY:
                    raise _BadRequest("request body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError as exc:
            raise _BadRequest("bad Content-Length") from exc
        if length < 0 or length > _MAX_REQUEST_BODY:
            raise _BadRequest("bad Content-Length")
        data = self.rfile.read(length)
        if len(data) != length:
            raise _BadRequest("truncated body")
        return data

    def _record(self, body: bytes) -> Recorded:
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        form: list[tuple[str, str]] = []
        if ctype == "application/x-www-form-urlencoded":
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        host, port = self.client_address[:2]
        return Recorded(
            method=self.command,
            path=split.path or "/",
            query=split.query,
            headers=headers,
            body=body,
            form=form,
            at=time.monotonic(),
            peer=(str(host), int(port)),
        )

    # --- response ---------------------------------------------------------

    def _serve(self) -> None:
        owner = self._owner
        try:
            body = self._read_body()
        except _BadRequest as exc:
            self.close_connection = True
            self._send(Reply(status=400, json={"error": "bad_request", "detail": str(exc)}))
            return
        rec = self._record(body)
        reply = owner._next_reply(rec)
        if reply.delay > 0 and owner._stopping.wait(reply.delay):
            self.close_connection = True  # stopped mid-delay: drop without a response
            return
        if reply.hold is not None:
            while not reply.hold.wait(0.05):
                if owner._stopping.is_set():
                    self.close_connection = True  # stopped while held: drop without a response
                    return
        if reply.drop:
            self.close_connection = True
            return
        if reply.trickle > 0:
            self._trickle(reply)
            return
        try:
            self._send(reply)
        except OSError:  # client went away (e.g. it enforced a size cap)
            self.close_connection = True

    def _trickle(self, reply: Reply) -> None:
        self.close_connection = True
        payload = reply.payload()
        head = f"HTTP/1.1 {reply.status} Slow\r\nContent-Type: {reply.effective_content_type()}\r\n"
        head += f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        for byte in head.encode("latin-1") + payload:
            if self._owner._stopping.wait(reply.trickle):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up (its deadline): that is the point
                with self._owner._lock:
                    self._owner.trickles_cut_short += 1
                return

    def _send(self, reply: Reply) -> None:
        stop = self._owner._stopping
        extra = {k.lower(): (k, v) for k, v in reply.headers.items()}
        streamed = reply.stream_bytes > 0
        payload = b"" if streamed else reply.payload()
        length = reply.stream_bytes if streamed else len(payload)
        no_body = self.command == "HEAD" or reply.status in (204, 304) or reply.status < 200

        self.send_response(reply.status)
        if "content-type" not in extra:
            self.send_header("Content-Type", reply.effective_content_type())
        if "content-length" in extra or reply.omit_length:
            self.close_connection = True  # body end is the connection close
        elif reply.status not in (204, 304) and reply.status >= 200:
            self.send_header("Content-Length", str(length))
        if extra.get("connection", ("", ""))[1].lower() == "close":
            self.close_connection = True
        for name, value in extra.values():
            self.send_header(name, value)
        if self.close_connection and "connection" not in extra:
            self.send_header("Connection", "close")
        self.end_headers()

        if no_body:
            return
        if not streamed:
            self.wfile.write(payload)
            return
        remaining = length
        while remaining > 0:
            if stop.is_set():
                self.close_connection = True
                return
            n = min(remaining, _CHUNK)
            self.wfile.write(_STREAM_BLOCK[:n])
            remaining -= n


class FaultServer:
    """Threaded, scriptable HTTP/1.1 test server on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queues: dict[str, collections.deque[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._records: list[Recorded] = []
        self._errors: list[BaseException] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        #: Trickled replies the client hung up on before they were sent whole (it gave up at its deadline).
        self.trickles_cut_short = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------

    def start(self) -> FaultServer:
        if self._server is not None:
            raise RuntimeError("FaultServer already started")
        self._stopping = threading.Event()
        server = _Server(self, (self._host, 0))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: interrupts delays and streams, closes open connections and the listener."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=2)
        self._server = None
        self._thread = None

    def __enter__(self) -> FaultServer:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FaultServer not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # --- scripting --------------------------------------------------------

    @staticmethod
    def _route(path: str) -> str:
        path = path.split("?", 1)[0]
        return path if path.startswith("/") else "/" + path

    def script(self, path: str, *replies: Reply) -> None:
        """Append replies to the FIFO queue for ``path`` (query string ignored)."""
        with self._lock:
            self._queues.setdefault(self._route(path), collections.deque()).extend(replies)

    def default(self, path: str, reply: Reply) -> None:
        """Reply served for ``path`` whenever its queue is empty."""
        with self._lock:
            self._defaults[self._route(path)] = reply

    def pending(self, path: str) -> int:
        """Scripted replies for ``path`` not yet served."""
        with self._lock:
            return len(self._queues.get(self._route(path), ()))

    # --- inspection -------------------------------------------------------

    def recorded(self, path: str | None = None) -> list[Recorded]:
        """Snapshot of recorded requests, in arrival order, optionally for one path."""
        with self._lock:
            if path is None:
                return list(self._records)
            route = self._route(path)
            return [r for r in self._records if r.path == route]

    @property
    def requests(self) -> list[Recorded]:
        return self.recorded()

    def count(self, path: str | None = None) -> int:
        return len(self.recorded(path))

    def wait_for(self, n: int, path: str | None = None, timeout: float = 30.0) -> bool:
        """Block until at least ``n`` requests (for ``path``) were recorded; False on timeout."""
        route = None if path is None else self._route(path)

        def enough() -> bool:
            return sum(1 for r in self._records if route is None or r.path == route) >= n

        with self._changed:
            return self._changed.wait_for(enough, timeout=timeout)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised in handler threads (normally empty)."""
        with self._lock:
            return list(self._errors)

    # --- called from handler threads --------------------------------------

    def _next_reply(self, rec: Recorded) -> Reply:
        with self._changed:
            self._records.append(rec)
            self._changed.notify_all()
            queue = self._queues.get(rec.path)
            if queue:
                return queue.popleft()
            return self._defaults.get(rec.path, NOT_FOUND)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _note_error(self, exc: BaseException) -> None:
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # clients hanging up are routine here
        with self._lock:
            self._errors.append(exc)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A started :class:`FaultServer`, stopped after the test."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()
