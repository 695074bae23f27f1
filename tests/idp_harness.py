"""Harness for the local OAuth 2.0 authorization server used by integration tests.

``tests/idp/server.mjs`` runs the ``oidc-provider`` npm package (pinned in
``tests/idp/package-lock.json``; install it with ``npm ci --prefix tests/idp``)
on a free loopback port. :class:`LocalIdP` starts and stops that process and
plays the end user in a browser: :meth:`LocalIdP.approve` and
:meth:`LocalIdP.deny` drive the server's own HTML pages (device verification,
dev-interaction login, consent) over HTTP, exactly as a browser would, and
:meth:`LocalIdP.authorize` does the same for an authorization-code request
(login, consent or cancel, then the redirect to the client's loopback
redirect URI), so most browser-login tests need no real browser.

The pytest fixtures :func:`idp` and :func:`idp_short_device_ttl` are defined
here; import them into a conftest (or test module) to use them.
"""

from __future__ import annotations

import collections
import json
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
import requests

IDP_DIR = Path(__file__).resolve().parent / "idp"
SERVER_SCRIPT = IDP_DIR / "server.mjs"
NODE_MODULES = IDP_DIR / "node_modules"

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

#: RFC 8707 resource indicators known to the server. Client-credentials
#: requests without ``resource`` are issued for :data:`API_RESOURCE`.
API_RESOURCE = "https://api.tokensmith.test/"
API_SCOPES = ("api:read", "api:write")
OTHER_API_RESOURCE = "https://other-api.tokensmith.test/"
OTHER_API_SCOPES = ("other:read",)

#: How long one start attempt may take before it is abandoned. Idle, node prints READY in about 0.5 s; a shared CI
#: machine has once stalled a start for over 20 s, so the wait is generous and a stalled start is tried once more
#: (START_ATTEMPTS) with a fresh process before the session fixture (and every test of that worker) fails.
DEFAULT_STARTUP_TIMEOUT = 45.0
START_ATTEMPTS = 2
#: A bound on each request to the IdP (the harness's own: discovery, approving a code, a browser's steps), not a claim:
#: a loaded machine can take seconds to answer, and only a hung IdP should fail here.
HTTP_TIMEOUT = 30.0


@dataclass(frozen=True)
class ClientInfo:
    """A client registered in ``tests/idp/server.mjs``."""

    client_id: str
    client_secret: str | None = None
    #: Authenticates with a JWT signed by a key the harness generates per server (``LocalIdP.private_keys``).
    private_key_jwt: bool = False

    def __repr__(self) -> str:  # keep secrets out of assertion output and logs
        secret = "None" if self.client_secret is None else "'***'"
        return f"ClientInfo(client_id={self.client_id!r}, client_secret={secret})"


#: client_credentials, ``client_secret_basic``; the secret contains ':', '%', '+' and ' '.
CC_CLIENT = ClientInfo("cc-client", "s3cr:t%25 +x/~")
#: client_credentials, ``client_secret_post``.
CC_POST_CLIENT = ClientInfo("cc-post-client", "post-secret-1")
#: client_credentials, ``client_secret_basic``; the client_id contains '/' and ':'.
ODD_CLIENT = ClientInfo("urn:tokensmith/cc:odd", "odd secret+1")
#: Public device-flow client (``none``); refresh tokens rotate.
DEVICE_PUBLIC = ClientInfo("device-public")
#: Confidential device-flow client, ``client_secret_basic``.
DEVICE_CONFIDENTIAL = ClientInfo("device-confidential", "device-secret-1")

#: client_credentials whose access tokens must be DPoP-bound (``dpop_bound_access_tokens``, RFC 9449 §5).
DPOP_REQUIRED = ClientInfo("dpop-required", "dpop-secret-1")
#: The credentials the test resource server introspects tokens with (RFC 7662).
RESOURCE_SERVER = ClientInfo("resource-server", "rs-secret-1")

#: Public native client for the browser login (authorization code + PKCE): any port on
#: ``http://127.0.0.1/callback`` and ``http://[::1]/callback`` (RFC 8252 §7.3); refresh tokens rotate.
BROWSER_PUBLIC = ClientInfo("browser-public")
#: Public client registered like flytekit's default (flyteadmin's public client config): exactly
#: :data:`FLYTEKIT_REDIRECT_URI` (a ``web`` client: the port must match too) and the scopes
#: :data:`FLYTEKIT_SCOPES` (plus ``openid offline_access`` for a refresh token).
FLYTEKIT_PUBLIC = ClientInfo("flytekit-public")
FLYTEKIT_REDIRECT_URI = "http://localhost:53593/callback"
FLYTEKIT_SCOPES = ("offline", "all")

#: ``client_secret_jwt`` (client credentials, device flow, refresh).
CSJWT_CLIENT = ClientInfo("csjwt-client", "csjwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKL")
#: ``client_secret_basic``, allowed the extension grants (token exchange, JWT bearer) and client credentials.
EXCHANGE_CLIENT = ClientInfo("exchange-client", "exchange-secret-1")
#: ``private_key_jwt`` clients (client credentials, device flow, refresh, token exchange, JWT bearer); their keys
#: are generated per server by the harness (:meth:`LocalIdP.private_key_pem`), only the public halves go to node.
PKJWT_RSA = ClientInfo("pkjwt-rsa", private_key_jwt=True)
PKJWT_EC = ClientInfo("pkjwt-ec", private_key_jwt=True)
PKJWT_ES384 = ClientInfo("pkjwt-es384", private_key_jwt=True)
#: An issuer the server trusts for JWT bearer assertions and JWT subject tokens (RFC 7523 §2.1, RFC 8693).
TRUSTED_ISSUER = "https://issuer.tokensmith.test"

ALL_CLIENTS = (
    CC_CLIENT,
    CC_POST_CLIENT,
    ODD_CLIENT,
    DEVICE_PUBLIC,
    DEVICE_CONFIDENTIAL,
    BROWSER_PUBLIC,
    FLYTEKIT_PUBLIC,
    CSJWT_CLIENT,
    EXCHANGE_CLIENT,
    PKJWT_RSA,
    PKJWT_EC,
    PKJWT_ES384,
)


def _generate_keys() -> dict[str, Any]:
    """Private keys for the ``private_key_jwt`` clients and the trusted issuer (``cryptography`` objects)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    return {
        PKJWT_RSA.client_id: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        PKJWT_EC.client_id: ec.generate_private_key(ec.SECP256R1()),
        PKJWT_ES384.client_id: ec.generate_private_key(ec.SECP384R1()),
        TRUSTED_ISSUER: ec.generate_private_key(ec.SECP256R1()),
    }


def public_jwk(private_key: Any, kid: str | None = None) -> dict[str, Any]:
    """The public JWK of a ``cryptography`` private key (``kid``: as given, else its RFC 7638 thumbprint)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    if kid is None:
        import base64
        import hashlib

        members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
        canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
        kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    jwk["kid"] = kid
    return jwk


class IdPError(RuntimeError):
    """Base class for harness errors."""


class IdPStartError(IdPError):
    """The server could not be started."""


class IdPStartTimeout(IdPStartError):
    """The server did not say READY in time (it is tried once more)."""


class IdPInteractionError(IdPError):
    """A page or form the browser flow expected was not there."""


# --------------------------------------------------------------------------- HTML


@dataclass
class _Control:
    """An ``<input>`` or ``<button>`` of an HTML form."""

    tag: str
    name: str | None
    value: str
    type: str

    @property
    def is_button(self) -> bool:
        return self.tag == "button" or self.type in ("submit", "image", "button", "reset")


@dataclass
class _Form:
    id: str | None
    action: str
    method: str
    controls: list[_Control] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        for control in self.controls:
            if control.name == name:
                return control.value
        return None

    def has_control(self, name: str) -> bool:
        return any(control.name == name for control in self.controls)

    def buttons(self) -> list[_Control]:
        return [control for control in self.controls if control.is_button]

    def payload(self, fill: dict[str, str], clicked: _Control | None = None) -> dict[str, str]:
        """The form data a browser sends: every named field, ``fill`` overriding
        values, plus the name/value of the clicked submit button (if named)."""
        data: dict[str, str] = {}
        for control in self.controls:
            if control.name is None or control.is_button:
                continue
            if control.type in ("checkbox", "radio"):
                continue  # the dev pages have none; unchecked boxes are not sent
            data[control.name] = control.value
        unknown = set(fill) - set(data)
        if unknown:
            raise ValueError(f"form has no field(s) {sorted(unknown)}")
        data.update(fill)
        if clicked is not None and clicked.name:
            data[clicked.name] = clicked.value
        return data


@dataclass
class _Link:
    href: str
    text: str


class _PageParser(HTMLParser):
    """Collects forms (including buttons attached with ``form="id"``), links
    and a few human-readable bits (title, h1, error paragraphs)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.links: list[_Link] = []
        self.title = ""
        self.heading = ""
        self.messages: list[str] = []
        self._form: _Form | None = None
        self._detached: list[tuple[str, _Control]] = []
        self._text_target: str | None = None
        self._text: list[str] = []
        self._link_href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._form = _Form(id=a.get("id"), action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._form)
        elif tag in ("input", "button"):
            default_type = "submit" if tag == "button" else "text"
            control = _Control(tag, a.get("name") or None, a.get("value", ""), a.get("type", default_type).lower())
            if "form" in a:
                self._detached.append((a["form"], control))
            elif self._form is not None:
                self._form.controls.append(control)
        elif tag == "a" and "href" in a:
            self._link_href = a["href"]
            self._start_text("a")
        elif tag in ("title", "h1"):
            self._start_text(tag)
        elif tag == "p" and "red" in a.get("class", "").split():
            self._start_text("p.red")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif self._text_target is not None and self._text_target.split(".")[0] == tag:
            text = " ".join("".join(self._text).split())
            if self._text_target == "title":
                self.title = text
            elif self._text_target == "h1":
                self.heading = text
            elif self._text_target == "p.red":
                self.messages.append(text)
            elif self._text_target == "a" and self._link_href is not None:
                self.links.append(_Link(self._link_href, text))
                self._link_href = None
            self._text_target = None

    def handle_data(self, data: str) -> None:
        if self._text_target is not None:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        by_id = {form.id: form for form in self.forms if form.id}
        for form_id, control in self._detached:
            if form_id in by_id:
                by_id[form_id].controls.append(control)

    def _start_text(self, target: str) -> None:
        self._text_target = target
        self._text = []


class _Page:
    """A fetched HTML page."""

    def __init__(self, response: requests.Response, step: str) -> None:
        self.response = response
        self.step = step
        self.url = response.url
        parser = _PageParser()
        parser.feed(response.text)
        parser.close()
        self.forms = parser.forms
        self.links = parser.links
        self.title = parser.title
        self.heading = parser.heading
        self.messages = parser.messages

    def describe(self) -> str:
        """Where we are, without any page content that could carry secrets."""
        parts = [f"{self.url} (HTTP {self.response.status_code})"]
        if self.title or self.heading:
            parts.append(f"page {self.title or self.heading!r}")
        if self.messages:
            parts.append(f"messages {self.messages!r}")
        return ", ".join(parts)

    def fail(self, what: str) -> IdPInteractionError:
        return IdPInteractionError(f"{self.step}: {what}; at {self.describe()}")

    def find_form(self, predicate: Callable[[_Form], bool]) -> _Form | None:
        return next((form for form in self.forms if predicate(form)), None)

    def form(self, predicate: Callable[[_Form], bool], what: str) -> _Form:
        found = self.find_form(predicate)
        if found is None:
            raise self.fail(f"expected the {what}, not found")
        return found

    def link(self, predicate: Callable[[_Link], bool], what: str) -> _Link:
        found = next((link for link in self.links if predicate(link)), None)
        if found is None:
            raise self.fail(f"expected the {what}, not found")
        return found


class _Browser:
    """A cookie-keeping HTTP client that fills in and submits forms."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: never via a proxy
        self.session.headers["User-Agent"] = "tokensmith-test-browser/1"

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, step: str) -> _Page:
        return self._page(self.session.get(url, timeout=HTTP_TIMEOUT), step)

    def submit(
        self,
        page: _Page,
        form: _Form,
        step: str,
        fill: dict[str, str] | None = None,
        button: Callable[[_Control], bool] | None = None,
        *,
        allow_redirects: bool = True,
    ) -> _Page:
        clicked: _Control | None = None
        if button is not None:
            clicked = next((b for b in form.buttons() if button(b)), None)
            if clicked is None:
                raise page.fail(f"expected a button for step {step!r}, not found")
        action = urljoin(page.url, form.action or page.url)
        try:
            data = form.payload(fill or {}, clicked)
        except ValueError as exc:
            raise page.fail(str(exc)) from None
        if form.method == "post":
            response = self.session.post(action, data=data, timeout=HTTP_TIMEOUT, allow_redirects=allow_redirects)
        else:
            response = self.session.get(action, params=data, timeout=HTTP_TIMEOUT, allow_redirects=allow_redirects)
        return self._page(response, step)

    @staticmethod
    def _page(response: requests.Response, step: str) -> _Page:
        page = _Page(response, step)
        if response.status_code >= 400:
            raise page.fail("unexpected HTTP error status")
        return page


@dataclass(frozen=True)
class Authorization:
    """Where an authorization request ended: the server sent the browser to ``redirect_url`` (the client's
    redirect URI with ``code`` or ``error``, ``state`` and ``iss``). When it was delivered there (as a browser
    would), ``status`` and ``page`` are the listener's answer."""

    redirect_url: str = field(repr=False)  # carries the code and the state
    status: int | None = None
    page: str | None = field(default=None, repr=False)

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.redirect_url).query))


# --------------------------------------------------------------------------- server


class LocalIdP:
    """The node ``oidc-provider`` server as a subprocess on 127.0.0.1.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        device_ttl: int | None = None,
        access_ttl: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        port: int = 0,
        dpop_nonce: bool = False,
    ) -> None:
        self.requested_port = port
        #: The token endpoint demands a DPoP nonce (RFC 9449 §8) in every proof (``--dpop-nonce``).
        self.dpop_nonce = dpop_nonce
        self.device_ttl = device_ttl
        self.access_ttl = access_ttl
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._ready: dict[str, Any] | None = None
        self._discovery: dict[str, Any] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._threads: list[threading.Thread] = []
        self.private_keys: dict[str, Any] = {}
        self._keys_dir: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> LocalIdP:
        if self._process is not None:
            raise IdPError("LocalIdP already started")
        node = shutil.which("node")
        if node is None:
            raise IdPStartError("`node` was not found on PATH; the test IdP needs Node.js")
        if not (NODE_MODULES / "oidc-provider").is_dir():
            raise IdPStartError(f"{NODE_MODULES} is missing oidc-provider; run `npm ci --prefix tests/idp` first")
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once(node)
            except IdPStartTimeout as stalled:
                if attempt == START_ATTEMPTS:
                    raise
                # Say so on stderr (pytest shows it with the test's output): a retry must never go unnoticed.
                print(f"idp_harness: start attempt {attempt} stalled, retrying: {stalled}", file=sys.stderr)
            else:
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, node: str) -> None:
        command = [node, str(SERVER_SCRIPT), "--port", str(self.requested_port)]
        if self.device_ttl is not None:
            command += ["--device-ttl", str(self.device_ttl)]
        if self.access_ttl is not None:
            command += ["--access-ttl", str(self.access_ttl)]
        command += ["--client-keys", self._write_client_keys()]
        if self.dpop_nonce:
            command.append("--dpop-nonce")

        self._stderr.clear()
        self._process = subprocess.Popen(
            command,
            cwd=IDP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        ready_lines: queue.Queue[str | None] = queue.Queue()
        assert self._process.stdout is not None and self._process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(self._process.stdout, ready_lines), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

        try:
            self._ready = self._wait_ready(ready_lines)
            self._discovery = self._fetch_discovery()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM), killing it if it does not exit in time."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=timeout)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        self._process = None
        self._threads = []
        if self._keys_dir is not None:
            self._keys_dir.cleanup()
            self._keys_dir = None

    def __enter__(self) -> LocalIdP:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_client_keys(self) -> str:
        """Generate this server's client and trusted-issuer keys; write the public halves for node."""
        self.private_keys = _generate_keys()
        document = {
            "clients": {
                client: {"keys": [public_jwk(self.private_keys[client])]}
                for client in (PKJWT_RSA.client_id, PKJWT_EC.client_id, PKJWT_ES384.client_id)
            },
            "trusted_issuers": {TRUSTED_ISSUER: {"keys": [public_jwk(self.private_keys[TRUSTED_ISSUER])]}},
        }
        self._keys_dir = tempfile.TemporaryDirectory(prefix="tokensmith-idp-keys-")
        path = Path(self._keys_dir.name) / "client-keys.json"
        path.write_text(json.dumps(document))
        return str(path)

    def private_key_pem(self, name: str) -> bytes:
        """The PEM (PKCS#8) private key of a ``private_key_jwt`` client or of :data:`TRUSTED_ISSUER`."""
        from cryptography.hazmat.primitives import serialization

        return bytes(
            self.private_keys[name].private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote to stderr (for debugging)."""
        return "\n".join(list(self._stderr)[-lines:])

    def _read_stdout(self, stream: IO[str], ready_lines: queue.Queue[str | None]) -> None:
        for line in stream:
            if line.startswith("READY "):
                ready_lines.put(line)
            else:
                self._stderr.append(f"[stdout] {line.rstrip()}")
        ready_lines.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line.rstrip())

    def _wait_ready(self, ready_lines: queue.Queue[str | None]) -> dict[str, Any]:
        deadline = time.monotonic() + self.startup_timeout
        try:
            line = ready_lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            alive = self._process is not None and self._process.poll() is None
            raise IdPStartTimeout(
                f"test IdP did not print READY within {self.startup_timeout:g} s "
                f"(process {'still running' if alive else 'exited'}); stderr:\n{self.stderr_tail()}"
            ) from None
        if line is None:
            assert self._process is not None
            try:
                code = self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            time.sleep(0.1)  # let the stderr reader catch up
            raise IdPStartError(f"test IdP exited (code {code}) before READY; stderr:\n{self.stderr_tail()}")
        try:
            info = json.loads(line.removeprefix("READY "))
        except ValueError:
            info = None
        if not isinstance(info, dict) or not {"issuer", "port", "verification_uri"} <= info.keys():
            raise IdPStartError(f"malformed READY line from test IdP: {line.strip()!r}")
        return info

    def _fetch_discovery(self) -> dict[str, Any]:
        url = f"{self.issuer}/.well-known/openid-configuration"
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(url, timeout=HTTP_TIMEOUT)
        if response.status_code != 200:
            raise IdPStartError(f"discovery failed: {url} (HTTP {response.status_code})")
        metadata: dict[str, Any] = response.json()
        if metadata.get("issuer") != self.issuer:
            raise IdPStartError(f"discovery issuer {metadata.get('issuer')!r} != {self.issuer!r}")
        return metadata

    # -- metadata ----------------------------------------------------------

    @property
    def ready_info(self) -> dict[str, Any]:
        if self._ready is None:
            raise IdPError("LocalIdP is not started")
        return self._ready

    @property
    def issuer(self) -> str:
        return str(self.ready_info["issuer"])

    @property
    def port(self) -> int:
        return int(self.ready_info["port"])

    @property
    def discovery(self) -> dict[str, Any]:
        """The server's ``/.well-known/openid-configuration`` document."""
        if self._discovery is None:
            raise IdPError("LocalIdP is not started")
        return self._discovery

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_endpoint(self) -> str:
        return str(self.discovery["token_endpoint"])

    @property
    def device_authorization_endpoint(self) -> str:
        return str(self.discovery["device_authorization_endpoint"])

    @property
    def revocation_endpoint(self) -> str:
        return str(self.discovery["revocation_endpoint"])

    @property
    def introspection_endpoint(self) -> str:
        return str(self.discovery["introspection_endpoint"])

    @property
    def verification_uri(self) -> str:
        """The device verification page (RFC 8628 §3.2 ``verification_uri``)."""
        return str(self.ready_info["verification_uri"])

    # -- the end user --------------------------------------------------------

    def approve(self, user_code: str, login: str = "alice") -> None:
        """Enter ``user_code`` on the verification page, sign in as ``login``
        and grant consent, like a user in a browser (RFC 8628 §3.3).

        The device authorization request must have asked for some scope (e.g.
        ``openid``): oidc-provider ends a scope-less request with
        ``access_denied`` right after login, and this raises
        :class:`IdPInteractionError` (no consent page)."""
        browser = _Browser()
        try:
            consent = self._sign_in(browser, user_code, login)
            form = consent.form(lambda f: f.value("prompt") == "consent", "consent form")
            done = browser.submit(consent, form, "consent")
            if "success" not in done.heading.lower():
                raise done.fail("expected the device sign-in success page after consent")
        finally:
            browser.close()

    def deny(self, user_code: str, login: str = "alice") -> None:
        """Like :meth:`approve`, but cancel at the consent page; the polling
        client then gets ``access_denied`` (RFC 8628 §3.5)."""
        browser = _Browser()
        try:
            consent = self._sign_in(browser, user_code, login)
            consent.form(lambda f: f.value("prompt") == "consent", "consent form")
            cancel = consent.link(lambda link: link.href.rstrip("/").endswith("/abort"), "cancel link")
            done = browser.get(urljoin(consent.url, cancel.href), "cancel consent")
            if not any("interrupted" in message.lower() for message in done.messages):
                raise done.fail("expected the 'request was interrupted' page after cancelling")
        finally:
            browser.close()

    def authorize(self, url: str, *, login: str = "alice", approve: bool = True, deliver: bool = True) -> Authorization:
        """Play the person in a browser for an authorization request (RFC 6749 §4.1.1): open ``url``, sign in as
        ``login`` on the dev login page, then grant consent (``approve``) or cancel it (the server then
        redirects with ``error=access_denied``). The redirects between the server's own pages are followed; the
        one that leaves the server (to the client's redirect URI) is returned, and with ``deliver`` also followed
        like a browser would, so a loopback listener receives it. Raises :class:`IdPInteractionError` when the
        server shows an error page instead of redirecting (an unregistered redirect URI, a bad parameter)."""
        browser = _Browser()
        try:
            response = browser.session.get(url, timeout=HTTP_TIMEOUT, allow_redirects=False)
            for _hop in range(20):
                if response.is_redirect:
                    target = urljoin(response.url, response.headers["location"])
                    if not target.startswith(self.issuer + "/"):
                        return self._arrive(browser, target, deliver)
                    response = browser.session.get(target, timeout=HTTP_TIMEOUT, allow_redirects=False)
                    continue
                page = _Page(response, "authorize")
                if response.status_code >= 400:
                    raise page.fail("the server refused the authorization request")
                form = page.find_form(lambda f: f.value("prompt") == "login")
                if form is not None:
                    # devInteractions accept any login/password; the login becomes `sub`.
                    fill = {"login": login, "password": "any-password"}
                    response = browser.submit(page, form, "log in", fill=fill, allow_redirects=False).response
                    continue
                form = page.form(lambda f: f.value("prompt") == "consent", "login or consent form")
                if approve:
                    response = browser.submit(page, form, "consent", allow_redirects=False).response
                else:
                    cancel = page.link(lambda link: link.href.rstrip("/").endswith("/abort"), "cancel link")
                    response = browser.session.get(
                        urljoin(page.url, cancel.href), timeout=HTTP_TIMEOUT, allow_redirects=False
                    )
            raise IdPInteractionError("authorize: more than 20 redirects")
        finally:
            browser.close()

    def login_page(self, url: str) -> str:
        """The HTML of the login page an authorization request leads to (to check what was passed through)."""
        browser = _Browser()
        try:
            return browser.get(url, "open authorization request").response.text
        finally:
            browser.close()

    @staticmethod
    def _arrive(browser: _Browser, target: str, deliver: bool) -> Authorization:
        if not deliver:
            return Authorization(target)
        answer = browser.session.get(target, timeout=HTTP_TIMEOUT, allow_redirects=False)
        return Authorization(target, answer.status_code, answer.text)

    def _sign_in(self, browser: _Browser, user_code: str, login: str) -> _Page:
        """Verification page -> user code -> confirm -> dev login; returns the consent page."""
        entry = browser.get(self.verification_uri, "open verification page")
        form = entry.form(lambda f: f.has_control("user_code") and f.has_control("xsrf"), "user code form")
        confirm = browser.submit(entry, form, "submit user code", fill={"user_code": user_code})

        form = confirm.form(
            lambda f: f.value("confirm") is not None and f.value("user_code") is not None, "device confirm form"
        )
        # "Continue" (the unnamed button), not the named "[ Abort ]" one.
        sign_in = browser.submit(confirm, form, "confirm device", button=lambda b: not b.name)

        form = sign_in.form(lambda f: f.value("prompt") == "login", "login form")
        # devInteractions accept any login/password; the login becomes `sub`.
        return browser.submit(sign_in, form, "log in", fill={"login": login, "password": "any-password"})


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def idp() -> Iterator[LocalIdP]:
    """A running test IdP with default TTLs (access 3600 s, device code 600 s)."""
    with LocalIdP() as server:
        yield server


@pytest.fixture(scope="session")
def idp_short_device_ttl() -> Iterator[LocalIdP]:
    """A running test IdP whose device codes expire after 3 s."""
    with LocalIdP(device_ttl=3) as server:
        yield server


@pytest.fixture(scope="session")
def idp_dpop_nonce() -> Iterator[LocalIdP]:
    """A running test IdP whose token endpoint demands a DPoP nonce in every proof (RFC 9449 §8)."""
    with LocalIdP(dpop_nonce=True) as server:
        yield server
