"""A protected resource for the DPoP and resource-discovery tests: stdlib ``http.server`` on a loopback port.

It does what a careful resource server does, for real:

- serves its RFC 9728 metadata at ``/.well-known/oauth-protected-resource/protected`` (path insertion, §3.1);
- answers a request without credentials with ``401`` and ``WWW-Authenticate: Bearer resource_metadata="…"``
  (plus a ``DPoP`` challenge, RFC 9449 §7.1, when it requires DPoP-bound tokens), §5.1;
- validates DPoP proofs (RFC 9449 §4.3, §7.1): ``typ``, an asymmetric ``alg``, the signature with the embedded
  public ``jwk`` (never a private one), ``htm``, ``htu`` (this URL without query and fragment), ``iat`` within a
  window, ``jti`` never seen before (replay), ``ath`` of the presented token, and — when ``require_nonce`` —
  a ``nonce`` it issued (else ``401 DPoP error="use_dpop_nonce"`` with a ``DPoP-Nonce`` header, §9);
- checks the token itself by introspection at the IdP (RFC 7662): active, ``aud`` is this resource, and for a
  DPoP-bound token ``cnf.jkt`` equals the proof key's RFC 7638 thumbprint (a bound token presented as a Bearer
  token is refused).

Everything it decided is recorded in ``events`` (reason strings), so tests can assert on *why* it refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests

PROOF_ALGS = ("ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA")
IAT_WINDOW = 60
#: Verdicts about the token itself (``invalid_token``), not about its proof (``invalid_dpop_proof``).
INACTIVE = "an inactive token"
OTHER_AUDIENCE = "a token for another audience"
TOKEN_VERDICTS = frozenset({INACTIVE})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638, written independently of tokensmith's (the server must not trust the client's arithmetic)."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass
class ResourceServer:
    """Configure, ``start()``, use ``base``/``url``, ``stop()``. See the module docstring."""

    issuer: str
    introspection_endpoint: str
    introspection_auth: tuple[str, str]
    require_dpop: bool = False
    require_nonce: bool = False
    #: What the metadata document says its ``resource`` is (default: the real identifier).
    metadata_resource: str | None = None
    metadata_extra: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    #: Raw header values the server received (``Authorization``, ``DPoP``), for leak checks.
    received: list[dict[str, str]] = field(default_factory=list)
    _seen_jti: set[str] = field(default_factory=set)
    _nonces: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle --

    def start(self) -> ResourceServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self)

            def do_POST(self) -> None:
                outer._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def resource(self) -> str:
        """The resource identifier (RFC 8707 / RFC 9728): ``<base>/protected``."""
        return self.base + "/protected"

    @property
    def metadata_url(self) -> str:
        return self.base + "/.well-known/oauth-protected-resource/protected"

    def new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(12)
        with self._lock:
            self._nonces.append(nonce)
        return nonce

    # -- requests --

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        if path == "/.well-known/oauth-protected-resource/protected":
            self._json(h, 200, self._metadata())
            return
        if path.startswith("/redirect/"):  # /redirect/<status>: to /protected/moved on this origin
            length = int(h.headers.get("Content-Length") or 0)
            if length:
                h.rfile.read(length)
            status = int(path.split("/")[2])
            self._event(f"redirected ({status})")
            h.send_response(status)
            h.send_header("Location", "/protected/moved")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if not path.startswith("/protected"):
            self._json(h, 404, {"error": "not_found"})
            return
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        authorization = h.headers.get("Authorization")
        proof = h.headers.get("DPoP")
        with self._lock:
            self.received.append({"Authorization": authorization or "", "DPoP": proof or ""})
        if not authorization:
            self._event("no credentials")
            self._challenge(h, None)
            return
        scheme, _, token = authorization.partition(" ")
        scheme = scheme.lower()
        # RFC 9449 §7.1 / RFC 6750 §3.1: invalid_dpop_proof for the proof (and a key the token is not bound to),
        # invalid_token for the token itself (inactive: expired or revoked; another audience).
        error = "invalid_token"
        if scheme == "dpop":
            verdict, jkt = self._check_dpop(h, token, proof)
            if verdict == "use_dpop_nonce":
                return  # answered already
            if verdict is None:
                verdict = self._check_token(token, jkt)
            if verdict is not None and verdict not in TOKEN_VERDICTS and not verdict.startswith(OTHER_AUDIENCE):
                error = "invalid_dpop_proof"
        elif scheme == "bearer" and not self.require_dpop:
            verdict = self._check_token(token, None)
        else:
            verdict = "a Bearer token where DPoP is required"
        if verdict is not None:
            self._event(f"refused: {verdict}")
            self._challenge(h, error, scheme)
            return
        self._event(f"ok: {scheme}")
        self._json(h, 200, {"ok": True, "scheme": scheme, "method": h.command})

    def _check_dpop(self, h: BaseHTTPRequestHandler, token: str, proof: str | None) -> tuple[str | None, str | None]:
        """What is wrong with the proof (None: nothing), and the thumbprint of its key."""
        verdict = self._proof_verdict(h, token, proof)
        if verdict is not None:
            return verdict, None
        return None, jwk_thumbprint(jwt.get_unverified_header(proof or "")["jwk"])

    def _proof_verdict(self, h: BaseHTTPRequestHandler, token: str, proof: str | None) -> str | None:
        if not proof or "," in proof:
            return "no (or more than one) DPoP proof"
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            return "a malformed proof"
        jwk = header.get("jwk")
        if header.get("typ") != "dpop+jwt" or header.get("alg") not in PROOF_ALGS or not isinstance(jwk, dict):
            return "a proof header without typ dpop+jwt, an asymmetric alg and a jwk"
        if any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
            return "a private key in the proof header"
        try:
            claims = jwt.decode(
                proof, jwt.PyJWK(jwk, header["alg"]).key, algorithms=[header["alg"]], options={"verify_aud": False}
            )
        except jwt.PyJWTError as error:
            return f"a bad proof signature ({type(error).__name__})"
        url = f"{self.base}{urlsplit(h.path).path}"
        if claims.get("htm") != h.command:
            return "htm mismatch"
        if claims.get("htu") != url:
            return "htu mismatch"
        iat = claims.get("iat")
        if not isinstance(iat, int) or abs(time.time() - iat) > IAT_WINDOW:
            return "iat outside the window"
        expected_ath = _b64url(hashlib.sha256(token.encode("ascii")).digest())
        if claims.get("ath") != expected_ath:
            return "ath mismatch"
        jti = claims.get("jti")
        with self._lock:
            if not isinstance(jti, str) or jti in self._seen_jti:
                return "a replayed proof (jti seen before)"
            self._seen_jti.add(jti)
            known_nonce = claims.get("nonce") in self._nonces
        if self.require_nonce and not known_nonce:
            self._event("asked for a nonce")
            nonce = self.new_nonce()
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'DPoP error="use_dpop_nonce", error_description="nonce required"')
            h.send_header("DPoP-Nonce", nonce)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return "use_dpop_nonce"
        return None

    def _check_token(self, token: str, jkt: str | None) -> str | None:
        answer = requests.post(
            self.introspection_endpoint, data={"token": token}, auth=self.introspection_auth, timeout=10
        ).json()
        if not answer.get("active"):
            return INACTIVE
        if answer.get("aud") != self.resource:
            return f"{OTHER_AUDIENCE} ({answer.get('aud')})"
        bound = (answer.get("cnf") or {}).get("jkt")
        if jkt is None and bound is not None:
            return "a DPoP-bound token presented as a Bearer token"
        if jkt is not None and bound != jkt:
            return "cnf.jkt does not match the proof key"
        return None

    def _challenge(self, h: BaseHTTPRequestHandler, error: str | None, scheme: str = "bearer") -> None:
        meta = f'resource_metadata="{self.metadata_url}"'
        challenges = []
        if not self.require_dpop:
            challenges.append(f"Bearer {meta}" + (f', error="{error}"' if error and scheme == "bearer" else ""))
        challenges.append(f'DPoP algs="ES256", {meta}' + (f', error="{error}"' if error and scheme == "dpop" else ""))
        h.send_response(401)
        h.send_header("WWW-Authenticate", ", ".join(challenges))
        if self.require_nonce:
            h.send_header("DPoP-Nonce", self.new_nonce())
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _metadata(self) -> dict[str, Any]:
        return {
            "resource": self.metadata_resource or self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": ["api:read", "api:write"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": list(PROOF_ALGS),
            "dpop_bound_access_tokens_required": self.require_dpop,
            **self.metadata_extra,
        }

    def _json(self, h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _event(self, what: str) -> None:
        with self._lock:
            self.events.append(what)


@pytest.fixture
def resource_server(idp: Any) -> Iterator[ResourceServer]:
    """A resource server on a loopback port, trusting the session's IdP (accepts Bearer and DPoP tokens)."""
    from idp_harness import RESOURCE_SERVER

    assert RESOURCE_SERVER.client_secret is not None
    server = ResourceServer(
        idp.issuer, idp.introspection_endpoint, (RESOURCE_SERVER.client_id, RESOURCE_SERVER.client_secret)
    ).start()
    try:
        yield server
    finally:
        server.stop()
