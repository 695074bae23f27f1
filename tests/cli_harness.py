"""Running the installed ``tokensmith`` command as a real subprocess, in a sandbox.

:class:`Cli` gives each test its own ``HOME``, ``XDG_CACHE_HOME`` (the token store) and ``XDG_CONFIG_HOME`` (the
profiles file) under a temporary directory, and an environment without any ``TOKENSMITH_*``, ``GIT_*`` or
``KUBERNETES_*`` variable of the person running the tests, so nothing reads or writes the real home.

:class:`CountingProxy` sits between the command and the test IdP and records every request (method, path, form):
the real IdP does not count, and a test must be able to say "exactly one refresh".
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from idp_harness import DEVICE_PUBLIC, ClientInfo, LocalIdP

#: The console script of the installed package (``pip install -e .`` puts it next to the interpreter).
TOKENSMITH = Path(sys.executable).with_name("tokensmith")
#: The RFC 8628 user code as the test IdP formats it.
USER_CODE = re.compile(r"\b([A-Z]{4}-[A-Z]{4})\b")
#: An RFC 6750 b64token.
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

_DROPPED = ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "SSH_CONNECTION", "SSH_TTY", "SSH_CLIENT")
_DROPPED_PREFIXES = ("TOKENSMITH_", "GIT_", "KUBERNETES_")


def sandbox_environ(root: Path) -> dict[str, str]:
    """The test process's environment with a private home under ``root`` and nothing of ours inherited."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)}
    home, cache, config = root / "home", root / "cache", root / "config"
    for directory in (home, cache, config):
        directory.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(cache),
        XDG_CONFIG_HOME=str(config),
        NO_COLOR="1",
        # git, when a test runs it: only the configuration the test writes.
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(root / "gitconfig"),
        GIT_TERMINAL_PROMPT="0",
    )
    return env


class Cli:
    """``tokensmith`` in a sandboxed environment rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = sandbox_environ(root)

    # -- where things are ----------------------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        """Where the command looks for profiles (``$XDG_CONFIG_HOME/tokensmith/config.toml``)."""
        return Path(self.env["XDG_CONFIG_HOME"]) / "tokensmith" / "config.toml"

    @property
    def tokens(self) -> Path:
        """The file store's default directory (``$XDG_CACHE_HOME/tokensmith/tokens``)."""
        return Path(self.env["XDG_CACHE_HOME"]) / "tokensmith" / "tokens"

    @property
    def identities(self) -> Path:
        return Path(self.env["XDG_CACHE_HOME"]) / "tokensmith" / "identities"

    def token_file(self, key: str, directory: Path | None = None) -> Path:
        return (directory or self.tokens) / f"{key}.json"

    def stored(self, key: str, directory: Path | None = None) -> dict[str, Any]:
        """The stored token's fields (``{"version": 1, "token": {...}}``'s inner object)."""
        document = json.loads(self.token_file(key, directory).read_text())
        assert document["version"] == 1
        token: dict[str, Any] = document["token"]
        return token

    def token_files(self, directory: Path | None = None) -> list[Path]:
        folder = directory or self.tokens
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def write_config(self, text: str) -> Path:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)
        return self.config_file

    # -- running it ------------------------------------------------------------------------------------------------

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.env, **(env or {})}

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        python_flags: tuple[str, ...] = (),
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """``tokensmith *args`` (or ``python *python_flags -m tokensmith *args``), stdin closed unless ``input``."""
        argv = [sys.executable, *python_flags, "-m", "tokensmith"] if python_flags else [str(TOKENSMITH)]
        return subprocess.run(
            [*argv, *args],
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            env=self.environ(env),
            timeout=timeout,
        )

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """``tokensmith *args`` started, stdin closed, stdout and stderr piped."""
        return subprocess.Popen(
            [str(TOKENSMITH), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environ(env),
        )

    def login_device(
        self, idp: LocalIdP, *args: str, env: Mapping[str, str] | None = None, approve: bool = True
    ) -> tuple[subprocess.CompletedProcess[str], str]:
        """``tokensmith login *args``, approving (or denying) its device code at the IdP as soon as it is shown,
        so the first poll (5 s later) already has the answer. Returns the finished process (stderr in full) and
        the code."""
        proc = self.popen("login", *args, env=env)
        try:
            seen, code = read_until_code(proc)
            (idp.approve if approve else idp.deny)(code)
            stdout, rest = proc.communicate(timeout=60)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, seen + rest), code


def read_until_code(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """stderr of a starting device login up to its user code, and the code."""
    assert proc.stderr is not None
    seen = ""
    while not (match := USER_CODE.search(seen)):
        line = proc.stderr.readline()
        if not line:
            proc.wait(timeout=30)
            raise AssertionError(f"tokensmith ended before showing a code: {seen!r}")
        seen += line
    return seen, match.group(1)


def one_line(stderr: str) -> str:
    """The single line of ``stderr`` (asserting there is exactly one, ending in a newline)."""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"expected one line on stderr, got {stderr!r}"
    return stderr[:-1]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- asking the IdP itself ------------------------------------------------------------------------------------------


def _idp_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def introspect(idp: LocalIdP, token: str, client: ClientInfo = DEVICE_PUBLIC) -> dict[str, Any]:
    """RFC 7662 introspection at the IdP, as ``client`` (the test IdP answers ``active: true`` only to the client
    the token was issued to; a confidential one authenticates with client_secret_post)."""
    form = {"token": token, "client_id": client.client_id}
    if client.client_secret is not None:
        form["client_secret"] = client.client_secret
    with _idp_session() as session:
        response = session.post(idp.introspection_endpoint, data=form, timeout=10)
    assert response.status_code == 200, response.status_code
    result: dict[str, Any] = response.json()
    return result


def redeem_refresh_token(idp: LocalIdP, refresh_token: str, client_id: str = "device-public") -> requests.Response:
    """POST a refresh_token grant to the token endpoint, as an attacker holding the refresh token would.
    (With rotation, a *successful* redemption consumes it: call this only to prove it is refused.)"""
    with _idp_session() as session:
        return session.post(
            idp.token_endpoint,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
            timeout=10,
        )


# -- a recording reverse proxy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    form: dict[str, str]


class CountingProxy:
    """A loopback HTTP reverse proxy to ``upstream`` (``http://host:port``) that records every request."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
                with owner._lock:
                    owner._seen.append(Seen(self.command, urlsplit(self.path).path, form))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = http.client.HTTPConnection(*owner._upstream, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    payload = answer.read()
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    upstream.close()

            do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def seen(self, path: str | None = None, **form: str) -> list[Seen]:
        """Recorded requests (to ``path``, with these form values)."""
        with self._lock:
            return [
                s
                for s in self._seen
                if (path is None or s.path == path) and all(s.form.get(k) == v for k, v in form.items())
            ]

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command line in a sandbox of its own (home, cache and config directories under ``tmp_path``)."""
    return Cli(tmp_path / "sandbox")


@pytest.fixture
def issuer() -> str:
    """An issuer nothing listens on: whatever a command answers came from the store, or from its own checks."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def idp_proxy(idp: LocalIdP) -> Iterator[CountingProxy]:
    """A :class:`CountingProxy` in front of the test IdP."""
    proxy = CountingProxy(idp.issuer)
    try:
        yield proxy
    finally:
        proxy.close()


def rewrite_token_file(path: Path, **fields: object) -> None:
    """Change fields of a stored token in place (keeping the file's 0600 mode), as time passing would."""
    document = json.loads(path.read_text())
    document["token"].update(fields)
    with open(path, "r+") as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n")


def expire(path: Path) -> None:
    """Make the stored token look an hour old and expired a minute ago."""
    now = time.time()
    rewrite_token_file(path, expires_at=now - 60, issued_at=now - 3660)


def plant(directory: Path, key: str, access_token: str, *, lifetime: float = 3600.0, **fields: Any) -> None:
    """Store a token under ``key`` with the library's own FileStore, as a login an hour-long token ago would."""
    from tokensmith import FileStore, Token

    now = time.time()
    FileStore(directory).save(key, Token(access_token=access_token, expires_at=now + lifetime, issued_at=now, **fields))
