"""Secretless client authentication: ``private_key_jwt`` and ``client_secret_jwt`` (RFC 7523 §2.2, OIDC Core §9;
C31).

Each request carries a new, short-lived JWT assertion (``iss`` = ``sub`` = the client id, ``aud`` = the endpoint
called or the issuer, ``exp`` a minute ahead, a random ``jti`` the server refuses to see twice), built when the
request is built: a retried or repeated request (device polling) is rebuilt with a new one. The assertion is a
secret: it is returned from ``apply`` for scrubbing, and never shown in a ``repr``, a log line or an error.

The private key may be PEM (``str``/``bytes``), a JWK ``dict``, a ``cryptography`` private key, or a callable
signer (``signer(signing_input) -> signature``, with ``alg`` given) so an HSM or a cloud KMS can sign without the
key ever being in this process. Private-key signing uses PyJWT (the ``jwt`` extra: ``pip install
'tokensmith[jwt]'``), imported on the first signature; ``client_secret_jwt`` needs only the standard library.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ._protocol.jwt_assertion import (
    ASYMMETRIC_ALGS,
    AUDIENCE_ENDPOINT,
    AUDIENCE_ISSUER,
    CLIENT_ASSERTION_TYPE,
    ECDSA_SIGNATURE_BYTES,
    HMAC_ALGS,
    Signer,
    assertion_claims,
    check_alg,
    choose_audience,
    compact_jws,
    jwk_thumbprint,
    jwt_header,
)
from ._protocol.messages import FormPairs
from ._redact import redact
from .exceptions import ConfigurationError, SigningError, TokensmithError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["CLIENT_ASSERTION_TYPE", "ClientSecretJWT", "PrivateKeyJWT"]

#: How long an assertion is valid (seconds): short, it is sent at once (RFC 7523 §3 "exp").
DEFAULT_LIFETIME = 60.0

_HMAC_HASHES: Mapping[str, Callable[[], Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}


def _new_jti() -> str:
    return secrets.token_urlsafe(24)  # 192 bits: unique without coordination


def _pyjwt() -> Any:
    try:
        import jwt
        from jwt.algorithms import get_default_algorithms
    except ImportError as error:
        raise ConfigurationError(
            "private_key_jwt needs PyJWT with cryptography: pip install 'tokensmith[jwt]'"
        ) from error
    if "RS256" not in get_default_algorithms():  # PyJWT without cryptography
        raise ConfigurationError("private_key_jwt needs PyJWT with cryptography: pip install 'tokensmith[jwt]'")
    return jwt


class _JWTClientAuth:
    """What both JWT methods share: the claims, the audience choice and how the assertion is sent."""

    #: Every request needs a new assertion (``tokensmith._protocol.client_auth.single_use``).
    single_use: ClassVar[bool] = True

    def __init__(
        self,
        client_id: str,
        *,
        audience: str,
        issuer: str | None,
        lifetime: float,
        clock: Callable[[], float],
        new_jti: Callable[[], str],
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("JWT client authentication needs a client_id")
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("audience must be 'endpoint', 'issuer' or the audience itself")
        if not lifetime > 0:
            raise ConfigurationError("lifetime must be > 0 seconds")
        self.client_id = client_id
        #: ``"endpoint"`` (the URL called: token, revocation or device endpoint), ``"issuer"`` (the issuer
        #: identifier; a tokensmith client configured with an issuer fills it in) or the audience itself.
        self.audience = audience
        self.issuer = issuer
        self.lifetime = lifetime
        self._clock = clock
        self._new_jti = new_jti

    def _signing(self) -> tuple[str, str | None, Signer]:
        raise NotImplementedError

    @property
    def may_block(self) -> bool:
        """Whether signing calls a user's callable (a KMS or HSM signer) that may block: ``AsyncTokenClient``
        then builds the request in a worker thread. In-memory keys and secrets sign on the spot."""
        return False

    def assertion(self, audience: str, *, subject: str | None = None, claims: Mapping[str, Any] | None = None) -> str:
        """A new signed assertion for ``audience`` (RFC 7523 §3): ``iss`` = the client id, ``sub`` = the client id
        (client authentication, §2.2) or ``subject`` (a JWT bearer grant, §2.1), ``iat``, ``exp`` (``lifetime``
        ahead), a random ``jti``, and any further ``claims`` (which never override those)."""
        alg, kid, sign = self._signing()
        payload = assertion_claims(
            issuer=self.client_id,
            subject=self.client_id if subject is None else subject,
            audience=audience,
            now=self._clock(),
            lifetime=self.lifetime,
            jti=self._new_jti(),
            extra=claims,
        )
        try:
            return compact_jws(jwt_header(alg, kid), payload, sign)
        except TokensmithError:
            raise
        except Exception as error:  # a KMS or HSM callable: its message may name keys or credentials (C10)
            raise SigningError(
                f"the JWT assertion could not be signed: the signer raised {type(error).__name__}"
            ) from None

    def apply_to(self, endpoint: str | None, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]:
        """Add ``client_id``, ``client_assertion_type`` and a new ``client_assertion`` for ``endpoint``. Nothing
        else: no Basic header, no secret (C2). ``client_id`` is optional but must match (RFC 7521 §4.2); some
        servers (Entra ID) require it."""
        assertion = self.assertion(choose_audience(self.audience, endpoint=endpoint, issuer=self.issuer))
        form.append(("client_id", self.client_id))
        form.append(("client_assertion_type", CLIENT_ASSERTION_TYPE))
        form.append(("client_assertion", assertion))
        return (assertion,)

    def apply(self, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]:
        """``ClientAuth.apply`` for callers that do not say where the request goes: works with
        ``audience="issuer"`` (and an issuer) or an explicit audience."""
        return self.apply_to(None, form, headers)

    def with_issuer(self, issuer: str) -> Self:
        """This method with the issuer filled in (a client does it), for ``audience="issuer"``. The parsed key is
        shared with the copy."""
        if self.issuer is not None or self.audience != AUDIENCE_ISSUER:
            return self  # the caller's own object, unless the issuer is needed
        bound = copy.copy(self)
        bound.issuer = issuer
        return bound

    def _describe(self) -> str:
        return f"client_id={self.client_id!r}, audience={self.audience!r}"


class ClientSecretJWT(_JWTClientAuth):
    """``client_secret_jwt`` (OIDC Core §9): the assertion is MACed with the client secret (HS256/384/512). The
    secret itself is never sent. Needs only the standard library."""

    def __init__(
        self,
        client_id: str,
        secret: str,
        alg: str = "HS256",
        *,
        audience: str = AUDIENCE_ENDPOINT,
        issuer: str | None = None,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
        new_jti: Callable[[], str] = _new_jti,
    ) -> None:
        super().__init__(client_id, audience=audience, issuer=issuer, lifetime=lifetime, clock=clock, new_jti=new_jti)
        if not isinstance(secret, str) or not secret:
            raise ConfigurationError("client_secret_jwt needs the client secret")
        self.alg = check_alg(alg, HMAC_ALGS, "client_secret_jwt")
        self._secret = secret

    def _signing(self) -> tuple[str, str | None, Signer]:
        key, digest = self._secret.encode(), _HMAC_HASHES[self.alg]
        return self.alg, None, lambda data: hmac.new(key, data, digest).digest()

    def __repr__(self) -> str:
        return f"ClientSecretJWT({self._describe()}, secret={redact(self._secret)}, alg={self.alg!r})"


class PrivateKeyJWT(_JWTClientAuth):
    """``private_key_jwt`` (RFC 7523 §2.2, OIDC Core §9): the assertion is signed with the client's private key
    (RS256, PS256, ES256, ES384, EdDSA, ...), whose public half the server knows (``jwks``/``jwks_uri``).

    ``key``: PEM (``str``/``bytes``, ``password`` for an encrypted one), a private JWK ``dict``, a ``cryptography``
    private key, or a callable ``signer(signing_input: bytes) -> bytes`` (HSM/KMS; ``alg`` is then required, and an
    ECDSA signer may return DER or raw ``r || s``). ``alg`` defaults to the key's natural one (RSA: RS256, P-256:
    ES256, P-384: ES384, Ed25519: EdDSA, or the JWK's ``alg``). ``kid``: as given, else the JWK's ``kid``, else
    the key's RFC 7638 thumbprint (none for a signer unless given). The key is parsed on the first request."""

    def __init__(
        self,
        client_id: str,
        key: Any,
        *,
        kid: str | None = None,
        alg: str | None = None,
        password: bytes | str | None = None,
        audience: str = AUDIENCE_ENDPOINT,
        issuer: str | None = None,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
        new_jti: Callable[[], str] = _new_jti,
    ) -> None:
        super().__init__(client_id, audience=audience, issuer=issuer, lifetime=lifetime, clock=clock, new_jti=new_jti)
        if key is None or (isinstance(key, str | bytes) and not key):
            raise ConfigurationError("private_key_jwt needs a private key")
        if isinstance(key, Mapping):
            if key.get("kty") == "oct":
                raise ConfigurationError("a symmetric JWK is not a private key: use ClientSecretJWT")
            if "d" not in key:
                raise ConfigurationError("the JWK has no private part ('d'): private_key_jwt needs the private key")
            if alg is None and isinstance(key.get("alg"), str):
                alg = key["alg"]
        if alg is not None:
            check_alg(alg, ASYMMETRIC_ALGS, "private_key_jwt")
        elif _is_signer(key):
            raise ConfigurationError("a signer callable needs alg= (and usually kid=)")
        self.kid = kid
        self.alg = alg
        self._key = key
        self._password = password.encode() if isinstance(password, str) else password
        self._loaded: list[tuple[str, str | None, Signer]] = []  # the parsed key, on first use

    @property
    def may_block(self) -> bool:
        return _is_signer(self._key)

    def _signing(self) -> tuple[str, str | None, Signer]:
        if not self._loaded:
            self._loaded.append(self._load())
        return self._loaded[0]

    def _load(self) -> tuple[str, str | None, Signer]:
        key = self._key
        if _is_signer(key):
            assert self.alg is not None
            return self.alg, self.kid, _raw_ecdsa(key, self.alg)
        jwt = _pyjwt()
        kid = self.kid
        if isinstance(key, Mapping):
            try:
                key_object = jwt.PyJWK(dict(key)).key
            except Exception as error:  # never the key material in the message
                raise ConfigurationError(f"the private JWK cannot be used ({type(error).__name__})") from None
            if kid is None and isinstance(key.get("kid"), str):
                kid = key["kid"]
        elif isinstance(key, str | bytes):
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            try:
                key_object = load_pem_private_key(key.encode() if isinstance(key, str) else key, self._password)
            except (ValueError, TypeError) as error:
                raise ConfigurationError(
                    f"the private key is not a usable PEM private key ({type(error).__name__})"
                ) from None
        else:
            key_object = key
        alg = self.alg or _natural_alg(key_object)
        _check_key_fits(key_object, alg)
        from jwt.algorithms import get_default_algorithms

        algorithm = get_default_algorithms()[alg]
        if kid is None:
            kid = jwk_thumbprint(algorithm.to_jwk(key_object.public_key(), as_dict=True))
        return alg, kid, lambda data: bytes(algorithm.sign(data, key_object))

    def __repr__(self) -> str:
        return f"PrivateKeyJWT({self._describe()}, key='***', kid={self.kid!r}, alg={self.alg!r})"


def _is_signer(key: Any) -> bool:
    """A callable signer (not a key object: ``cryptography`` keys are not callable)."""
    return callable(key) and not isinstance(key, str | bytes | Mapping)


def _natural_alg(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in by_curve:
            raise ConfigurationError(f"no JWS algorithm for the EC curve {key.curve.name}")
        return by_curve[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "EdDSA"
    raise ConfigurationError(f"not a private key tokensmith can sign with: {type(key).__name__}")


def _check_key_fits(key: Any, alg: str) -> None:
    """The algorithm must match the key (RS/PS: RSA; ES: the curve of RFC 7518 §3.4; EdDSA: an OKP key)."""
    natural = _natural_alg(key)
    fits = alg == natural or (natural == "RS256" and alg[:2] in ("RS", "PS")) or (natural == "EdDSA" and alg == "EdDSA")
    if not fits:
        raise ConfigurationError(f"algorithm {alg} does not fit the private key (use {natural})")
    bits = getattr(key, "key_size", None)
    if natural == "RS256" and isinstance(bits, int) and bits < 2048:
        raise ConfigurationError(f"a {bits}-bit RSA key is too short: RFC 7518 §3.3 requires 2048 bits or more")


def _raw_ecdsa(sign: Signer, alg: str) -> Signer:
    """A signer for JWS: an ECDSA signature in DER (what HSMs and cloud KMSs return) becomes raw ``r || s``
    (RFC 7518 §3.4); other signatures pass through."""
    size = ECDSA_SIGNATURE_BYTES.get(alg)
    if size is None:
        return sign

    def raw(data: bytes) -> bytes:
        signature = bytes(sign(data))
        if len(signature) == size:
            return signature
        try:
            from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ConfigurationError("a DER ECDSA signature needs cryptography to convert it") from error
        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            raise ConfigurationError(f"the signer's {alg} signature is neither raw r||s nor DER") from None
        half = size // 2
        return r.to_bytes(half, "big") + s.to_bytes(half, "big")

    return raw


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
PrivateKeyJWT.__module__ = "tokensmith"
ClientSecretJWT.__module__ = "tokensmith"
