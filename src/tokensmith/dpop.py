"""DPoP (RFC 9449): the client's proof-of-possession key, proofs for every request, and server nonces.

``DPoPKey`` is the public face: a key generated here (ES256, P-256 by default) or supplied (a ``cryptography``
private key, a PEM, a private JWK, or a signing callable with its public JWK). ``TokenClient(..., dpop=True)``
generates one and keeps it in the store next to (never inside) the token; ``dpop=DPoPKey(...)`` uses yours.

PyJWT (with cryptography) is the optional ``jwt`` extra; it is imported only when a key is made or used, and its
absence is a ``DPoPError`` saying what to install. The proof's bytes are arranged by the sans-IO core
(``tokensmith._protocol.dpop``); the pieces here hold the key, the remembered nonces (one per server origin,
RFC 9449 §8.1) and fit proofs into the token-endpoint flows and the HTTP integrations.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ._flow import Flow, Post, T, build, fresh_request
from ._protocol import dpop as proto
from ._protocol.messages import HttpRequest, HttpResponse
from ._warnings import RepeatedWarnings
from .exceptions import DPoPError, SigningError, TokensmithError
from .stores.codec import short_key

logger = logging.getLogger("tokensmith.dpop")
#: One get_token() reads the key slot more than once (the token, then again under the store lock).
_key_warnings = RepeatedWarnings(logger)

__all__ = ["DPoPKey"]

#: Signature algorithms a generated or supplied key may use (asymmetric only, RFC 9449 §4.2).
SUPPORTED_ALGS = ("ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA")
_EC_ALG_FOR_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def _jwt_algorithms() -> Any:
    try:
        from jwt import algorithms
    except ImportError as error:  # pragma: no cover - exercised with the extra uninstalled
        raise DPoPError(
            "DPoP needs PyJWT with cryptography: pip install 'tokensmith[jwt]' (or 'PyJWT[crypto]>=2.8')"
        ) from error
    if not getattr(algorithms, "has_crypto", False):  # pragma: no cover - PyJWT without cryptography
        raise DPoPError("DPoP needs the cryptography package: pip install 'tokensmith[jwt]'")
    return algorithms


def _algorithm(alg: str) -> Any:
    algorithms = _jwt_algorithms()
    if alg not in SUPPORTED_ALGS:
        raise DPoPError(f"unsupported DPoP algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGS)}")
    return algorithms.get_default_algorithms()[alg]


class DPoPKey:
    """A DPoP key pair: signs proofs, shows only its public JWK. The private part never appears in ``repr``,
    logs or errors; ``thumbprint`` (RFC 7638, the ``jkt`` a server binds tokens to) is safe to show.

    Make one with ``DPoPKey.generate()``, ``DPoPKey(cryptography_private_key)``, ``DPoPKey.from_pem(pem)``,
    ``DPoPKey.from_jwk(jwk)``, or ``DPoPKey.from_signer(sign, public_jwk, alg)`` for a key that never leaves an
    HSM or agent (``sign(signing_input) -> signature``, in JWS form: ``R || S`` for ECDSA)."""

    __slots__ = ("_alg", "_header", "_key", "_may_block", "_public_jwk", "_sign", "_thumbprint")

    def __init__(self, private_key: Any, alg: str | None = None) -> None:
        algorithms = _jwt_algorithms()
        jwk = _public_jwk_of(private_key, algorithms)
        alg = alg or _default_alg(jwk)
        algorithm = _algorithm(alg)
        if jwk.get("kty") == "EC" and _EC_ALG_FOR_CURVE.get(str(jwk.get("crv"))) != alg:
            raise DPoPError(f"a {jwk.get('crv')} key cannot sign {alg} (RFC 7518 §3.4)")
        bits = getattr(private_key, "key_size", None)
        if jwk.get("kty") == "RSA" and isinstance(bits, int) and bits < 2048:
            raise DPoPError(f"a {bits}-bit RSA key is too short: RFC 7518 §3.3 requires 2048 bits or more")
        try:  # does the key suit the algorithm? (a P-384 key cannot sign ES256)
            algorithm.prepare_key(private_key)
        except Exception as error:
            raise DPoPError(f"this key cannot sign {alg}: {type(error).__name__}") from None
        self._key = private_key
        self._alg = alg
        self._public_jwk = jwk
        self._thumbprint = proto.jwk_thumbprint(jwk)
        self._header = proto.proof_header(alg, jwk)
        self._sign: Callable[[bytes], bytes] = lambda data: algorithm.sign(data, private_key)
        self._may_block = False

    @classmethod
    def generate(cls, alg: str = "ES256") -> DPoPKey:
        """A new key pair for ``alg`` (ES256 by default: P-256, small and fast, RFC 9449's example)."""
        _jwt_algorithms()
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        curves: dict[str, ec.EllipticCurve] = {
            "ES256": ec.SECP256R1(),
            "ES384": ec.SECP384R1(),
            "ES512": ec.SECP521R1(),
        }
        key: Any
        if alg in curves:
            key = ec.generate_private_key(curves[alg])
        elif alg in ("RS256", "PS256"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise DPoPError(f"unsupported DPoP algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGS)}")
        return cls(key, alg)

    @classmethod
    def from_pem(cls, pem: str | bytes, password: bytes | str | None = None, *, alg: str | None = None) -> DPoPKey:
        """A key from a PEM private key (PKCS#8 or traditional); ``password`` for an encrypted one (a ``str`` is
        taken as UTF-8, as ``PrivateKeyJWT`` takes it)."""
        _jwt_algorithms()
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            data = pem.encode("ascii") if isinstance(pem, str) else pem
            secret = password.encode("utf-8") if isinstance(password, str) else password
            key = load_pem_private_key(data, password=secret)
        except (ValueError, TypeError) as error:
            raise DPoPError(f"not a usable PEM private key ({type(error).__name__})") from None
        return cls(key, alg)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any] | str, *, alg: str | None = None) -> DPoPKey:
        """A key from a private JWK (a mapping or its JSON)."""
        algorithms = _jwt_algorithms()
        try:  # never chained: JSONDecodeError.doc is the whole text, the private key included
            data = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
        except (ValueError, TypeError, RecursionError) as error:  # RecursionError: a key slot of "[[[[..."
            raise DPoPError(f"not a usable private JWK ({type(error).__name__})") from None
        if not isinstance(data, dict) or "d" not in data:
            raise DPoPError("a DPoP key needs a private JWK (with 'd')")
        kty = data.get("kty")
        loaders = {"EC": algorithms.ECAlgorithm, "RSA": algorithms.RSAAlgorithm, "OKP": algorithms.OKPAlgorithm}
        loader = loaders.get(kty) if isinstance(kty, str) else None
        if loader is None:
            raise DPoPError(f"unsupported JWK key type {kty!r}")
        try:
            key = loader.from_jwk(data)
        except Exception as error:
            raise DPoPError(f"not a usable private JWK ({type(error).__name__})") from None
        recorded = data.get("alg")  # what save_key wrote, so a reloaded key signs as before
        return cls(key, alg or (recorded if recorded in SUPPORTED_ALGS else None))

    @classmethod
    def from_signer(cls, sign: Callable[[bytes], bytes], public_jwk: Mapping[str, Any], alg: str) -> DPoPKey:
        """A key held elsewhere: ``sign`` signs the JWS signing input (``R || S`` for ECDSA). Such a key cannot be
        persisted by a store: keep it yourself, and pass it to each new client."""
        if alg not in SUPPORTED_ALGS:
            raise DPoPError(f"unsupported DPoP algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGS)}")
        key = cls.__new__(cls)
        key._key = None
        key._alg = alg
        key._public_jwk = proto.public_jwk(public_jwk)
        key._thumbprint = proto.jwk_thumbprint(key._public_jwk)
        key._header = proto.proof_header(alg, key._public_jwk)
        key._sign = _guarded(sign)
        key._may_block = True
        return key

    @property
    def alg(self) -> str:
        return self._alg

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public JWK that goes in each proof's header (a copy)."""
        return dict(self._public_jwk)

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 thumbprint of the public key: the ``jkt`` tokens are bound to (RFC 9449 §6)."""
        return self._thumbprint

    @property
    def may_block(self) -> bool:
        """Whether proofs are signed by a callable (``from_signer``: an HSM, KMS or agent) that may block: an
        ``AsyncTokenClient`` then signs them in a worker thread. An in-memory key signs on the spot."""
        return self._may_block

    @property
    def exportable(self) -> bool:
        """Whether the private key is here (a store can keep it), not behind a signing callable."""
        return self._key is not None

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: int | None = None,
        jti: str | None = None,
    ) -> str:
        """A fresh proof for one request (RFC 9449 §4.2): ``htm``, ``htu`` (``url`` without query and fragment),
        ``iat`` (now), a random ``jti``; ``ath`` with ``access_token``; ``nonce`` when the server gave one."""
        return proto.build_proof(
            self._sign,
            self._alg,
            self._public_jwk,
            method,
            url,
            iat=int(time.time()) if iat is None else iat,
            jti=secrets.token_urlsafe(16) if jti is None else jti,
            access_token=access_token,
            nonce=nonce,
            header=self._header,
        )

    def _private_jwk_json(self) -> str:
        """The private JWK as JSON, for the store's key slot only (never logged)."""
        if self._key is None:
            raise DPoPError("this DPoP key signs through a callable; its private part cannot be exported")
        algorithms = _jwt_algorithms()
        for loader in (algorithms.ECAlgorithm, algorithms.RSAAlgorithm, algorithms.OKPAlgorithm):
            try:
                data = json.loads(loader.to_jwk(self._key))
            except Exception:  # noqa: S112 - not this key type: try the next
                continue
            data["alg"] = self._alg
            return json.dumps(data, sort_keys=True, separators=(",", ":"))
        raise DPoPError("this DPoP key cannot be exported as a JWK")  # pragma: no cover

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self._alg!r}, thumbprint={self._thumbprint!r})"

    def __reduce__(self) -> Any:  # never pickled by accident (a process pool, a cache): that would copy the key
        raise TypeError("a DPoPKey cannot be pickled; persist it with a store or keep your own PEM")


def _guarded(sign: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``sign`` (an HSM, KMS or agent callable) whose failure is a ``SigningError`` naming only the exception type:
    its message may name keys or credentials (C10), and a typed, transient error lets a renewal ahead of expiry
    serve the still-valid token."""

    def signed(data: bytes) -> bytes:
        try:
            return sign(data)
        except TokensmithError:
            raise
        except Exception as error:
            raise SigningError(
                f"the DPoP proof could not be signed: the signer raised {type(error).__name__}"
            ) from None

    return signed


def _public_jwk_of(private_key: Any, algorithms: Any) -> dict[str, Any]:
    public = getattr(private_key, "public_key", None)
    if public is None:
        raise DPoPError("a DPoP key needs an asymmetric private key (EC, RSA or Ed25519)")
    for loader in (algorithms.ECAlgorithm, algorithms.RSAAlgorithm, algorithms.OKPAlgorithm):
        try:
            return proto.public_jwk(json.loads(loader.to_jwk(public())))
        except Exception:  # noqa: S112 - not this key type
            continue
    raise DPoPError(f"unsupported DPoP key type {type(private_key).__name__}")


def _default_alg(jwk: Mapping[str, Any]) -> str:
    if jwk.get("kty") == "EC":
        alg = _EC_ALG_FOR_CURVE.get(str(jwk.get("crv")))
        if alg is None:
            raise DPoPError(f"unsupported EC curve {jwk.get('crv')!r}")
        return alg
    if jwk.get("kty") == "OKP":
        return "EdDSA"
    return "RS256"


# --- the client's DPoP state ------------------------------------------------------------------------------------


class DPoPSession:
    """One client's DPoP state: the key (supplied, or generated/loaded through the store) and the latest nonce of
    each server origin. Shared by the client's threads (a lock guards the nonces; signing needs none)."""

    def __init__(self, key: DPoPKey | None, *, generated: bool, clock: Callable[[], float] = time.time) -> None:
        #: None until loaded or generated (``generated`` mode only).
        self.key = key
        #: The client's wall clock: each proof's ``iat`` (RFC 9449 §4.2).
        self._clock = clock
        #: The key is ours to make and to keep in the store (``dpop=True``), not the caller's.
        self.generated = generated
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def require_key(self) -> DPoPKey:
        if self.key is None:  # pragma: no cover - the engine loads or makes the key before any request
            raise DPoPError("no DPoP key loaded yet")
        return self.key

    def nonce_for(self, url: str) -> str | None:
        with self._lock:
            return self._nonces.get(proto.origin(url))

    def remember_nonce(self, url: str, nonce: str | None) -> None:
        """The latest ``DPoP-Nonce`` of a server replaces the one before (RFC 9449 §8.1)."""
        if nonce is None:
            return
        with self._lock:
            self._nonces[proto.origin(url)] = nonce

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        return self.require_key().proof(
            method, url, access_token=access_token, nonce=self.nonce_for(url), iat=int(self._clock())
        )

    def signed(self, request: HttpRequest) -> HttpRequest:
        """``request`` (a token-endpoint POST) with a fresh proof in its ``DPoP`` header."""
        return replace(request, headers={**request.headers, "DPoP": self.proof("POST", request.url)})

    def exchange(self, request: HttpRequest) -> Flow[HttpResponse]:
        """One proof-carrying POST, its nonce remembered; the answer with any echo of the proof removed. A proof
        signed by a callable (``DPoPKey.from_signer``) is a ``Blocking`` effect: off the event loop in async code."""
        signed = yield from build(functools.partial(self.signed, request), self.require_key().may_block)
        response: HttpResponse = yield Post(signed)
        self.remember_nonce(request.url, proto.response_nonce(response))
        return _scrubbed(response, (signed.headers["DPoP"], *request.secrets))

    def token_flow(self, inner: Flow[T], is_token_endpoint: Callable[[str], bool]) -> Flow[T]:
        """``inner`` with a fresh proof on each of its POSTs to the token endpoint, and the one retry a nonce
        challenge asks for (RFC 9449 §8). Every other effect passes through untouched, so any grant flow (client
        credentials, refresh, device polling) gets DPoP without knowing of it."""
        value: Any = None
        failure: BaseException | None = None
        while True:
            try:
                effect = inner.send(value) if failure is None else inner.throw(failure)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, failure = None, None
            try:
                if isinstance(effect, Post) and is_token_endpoint(effect.request.url):
                    value = yield from self._post_with_proof(effect.request)
                else:
                    value = yield effect
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as error:  # thrown into the inner flow, which decides
                failure = error

    def _post_with_proof(self, request: HttpRequest) -> Flow[HttpResponse]:
        response = yield from self.exchange(request)
        if proto.is_token_nonce_challenge(response):
            logger.debug("the token endpoint asked for a DPoP nonce (RFC 9449 §8); retrying once with it")
            # fresh(): a single-use client assertion (RFC 7523 jti) must not be replayed by this retry either.
            response = yield from self.exchange((yield from fresh_request(request)))
        return response


class DPoPSender:
    """A synchronous sender (``post``) that puts a proof on each token-endpoint request, with the nonce retry:
    for the flows that run outside the engine's effects (the browser login's one token request)."""

    def __init__(self, inner: Any, session: DPoPSession) -> None:
        self._inner = inner
        self._session = session

    def post(self, request: HttpRequest) -> HttpResponse:
        response = self._post_once(request)
        if proto.is_token_nonce_challenge(response):
            response = self._post_once(request.fresh())
        return response

    def _post_once(self, request: HttpRequest) -> HttpResponse:
        signed = self._session.signed(request)
        response: HttpResponse = self._inner.post(signed)
        self._session.remember_nonce(request.url, proto.response_nonce(response))
        return _scrubbed(response, (signed.headers["DPoP"], *request.secrets))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _scrubbed(response: HttpResponse, secrets: tuple[str, ...]) -> HttpResponse:
    """``response`` with any echo of the proof (or its signature) and of the request's secrets blanked out of the
    body: the grant flows scrub error descriptions of the secrets *they* sent, but the proof was added after them,
    and a nonce retry sends a rebuilt request (a new client assertion) they never saw (C10)."""
    proof, *others = secrets
    body = response.body
    for secret in (proof, proof.rsplit(".", 1)[-1], *others):
        data = secret.encode("utf-8")
        if len(data) >= 8 and data in body:
            body = body.replace(data, b"[redacted]")
    return response if body is response.body else replace(response, body=body)


# --- keys in stores ---------------------------------------------------------------------------------------------

_warned_stores: set[int] = set()
_warned_lock = threading.Lock()


def _warn_no_key_slot(store: object) -> None:
    with _warned_lock:
        if id(store) in _warned_stores:
            return
        _warned_stores.add(id(store))
    message = (
        f"{type(store).__name__} has no DPoP key slot (load_key/save_key/delete_key); the DPoP key is kept in "
        "memory only, so a DPoP-bound token stored there is unusable in a new process"
    )
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def has_key_slot(store: object) -> bool:
    return all(callable(getattr(store, name, None)) for name in ("load_key", "save_key", "delete_key"))


def load_store_key(store: object, cache_key: str) -> DPoPKey | None:
    """The DPoP key kept for ``cache_key``, or None (no slot, nothing there, or something unreadable)."""
    if not has_key_slot(store):
        _warn_no_key_slot(store)
        return None
    data = store.load_key(cache_key)  # type: ignore[attr-defined]
    if data is None:
        return None
    try:
        return DPoPKey.from_jwk(data)
    except (DPoPError, ValueError, TypeError):
        _key_warnings("the stored DPoP key for key %s is unreadable; ignored", short_key(cache_key))
        return None


def save_store_key(store: object, cache_key: str, key: DPoPKey) -> None:
    if has_key_slot(store):
        store.save_key(cache_key, key._private_jwk_json())  # type: ignore[attr-defined]
    else:
        _warn_no_key_slot(store)


def delete_store_key(store: object, cache_key: str) -> bool:
    if has_key_slot(store):
        return bool(store.delete_key(cache_key))  # type: ignore[attr-defined]
    return False


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
DPoPKey.__module__ = "tokensmith"
