"""JWT assertions for client authentication and the JWT bearer grant (RFC 7523, OIDC Core §9; C31), sans-IO.

Pure: the caller passes the time, the ``jti`` (random, from the driver) and a ``sign`` function (a PyJWT key, an
HMAC secret, or an HSM/KMS signer), so every rule here is testable without keys on disk or a clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..exceptions import ConfigurationError

#: RFC 7523 §2.2: ``client_assertion_type`` for a JWT client assertion.
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Signature algorithms for a private key (``private_key_jwt``); RS/PS/ES/EdDSA per RFC 7518 §3.1 and RFC 8037.
ASYMMETRIC_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
#: MAC algorithms for a shared secret (``client_secret_jwt``), RFC 7518 §3.2.
HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
#: Raw ``r || s`` length of an ECDSA signature per JWS algorithm (RFC 7518 §3.4).
ECDSA_SIGNATURE_BYTES: Mapping[str, int] = MappingProxyType({"ES256": 64, "ES384": 96, "ES512": 132})

#: A signing function: the JWS signing input (``b64url(header) . b64url(claims)``) to the JWS signature bytes.
Signer = Callable[[bytes], bytes]

#: What ``aud`` names (C31): the endpoint the assertion is sent to, the issuer identifier, or an explicit value.
AUDIENCE_ENDPOINT = "endpoint"
AUDIENCE_ISSUER = "issuer"


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def check_alg(alg: str, allowed: frozenset[str], what: str) -> str:
    """``alg`` if it is one of ``allowed``; ``ConfigurationError`` otherwise. ``none`` is never allowed: RFC 7523
    §3 "The JWT MUST be digitally signed or have a Message Authentication Code (MAC) applied"."""
    if not isinstance(alg, str) or alg.lower() == "none":
        raise ConfigurationError(f"{what}: an unsigned JWT (alg 'none') is refused (RFC 7523 §3)")
    if alg not in allowed:
        raise ConfigurationError(f"{what}: algorithm {alg!r} is not one of {', '.join(sorted(allowed))}")
    return alg


def choose_audience(audience: str, *, endpoint: str | None, issuer: str | None) -> str:
    """The ``aud`` claim: ``"endpoint"`` (the URL the assertion is sent to; RFC 7523 §3 allows the token endpoint
    URL, oidc-provider and most servers accept the endpoint itself), ``"issuer"`` (the issuer identifier, which
    some servers require), or any other string taken as the audience itself."""
    if audience == AUDIENCE_ENDPOINT:
        if not endpoint:
            raise ConfigurationError("a JWT assertion for the endpoint needs the endpoint URL")
        return endpoint
    if audience == AUDIENCE_ISSUER:
        if not issuer:
            raise ConfigurationError(
                "a JWT assertion for the issuer needs the issuer: configure the client with issuer=..., or pass "
                "issuer= to the client-authentication object"
            )
        return issuer
    if not audience:
        raise ConfigurationError("the JWT assertion audience is empty")
    return audience


def assertion_claims(
    *,
    issuer: str,
    subject: str,
    audience: str,
    now: float,
    lifetime: float,
    jti: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The claim set of RFC 7523 §3: ``iss``, ``sub``, ``aud``, ``exp`` (``now + lifetime``), ``iat`` and a unique
    ``jti`` (OIDC Core §9 requires it for client authentication; the server refuses a replay). ``extra`` claims
    never override these."""
    if not lifetime > 0:
        raise ConfigurationError("a JWT assertion lifetime must be > 0 seconds")
    if not jti:
        raise ConfigurationError("a JWT assertion needs a jti")
    issued = int(now)
    claims: dict[str, Any] = dict(extra or {})
    claims.update(iss=issuer, sub=subject, aud=audience, iat=issued, exp=issued + max(1, int(lifetime)), jti=jti)
    return claims


def signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    """``BASE64URL(UTF8(header)) || '.' || BASE64URL(claims)`` (RFC 7515 §5.1), compact JSON."""
    encoded = [b64url(json.dumps(part, separators=(",", ":"), sort_keys=True).encode()) for part in (header, claims)]
    return ".".join(encoded).encode("ascii")


def compact_jws(header: Mapping[str, Any], claims: Mapping[str, Any], sign: Signer) -> str:
    """The compact serialization of a JWS over ``claims`` (RFC 7515 §7.1), signed by ``sign``."""
    data = signing_input(header, claims)
    signature = sign(data)
    if not isinstance(signature, bytes | bytearray) or not signature:
        raise ConfigurationError("the JWT signer returned no signature bytes")
    return f"{data.decode('ascii')}.{b64url(bytes(signature))}"


def jwt_header(alg: str, kid: str | None) -> dict[str, str]:
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    return header


#: RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
)


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (used as ``kid`` when the key has none)."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ConfigurationError(f"no RFC 7638 thumbprint for key type {jwk.get('kty')!r}")
    canonical = {name: jwk[name] for name in members}
    digest = hashlib.sha256(json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode()).digest()
    return b64url(digest)


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claim set of a compact JWT, not verified (for telling cached tokens apart, never for trust); None
    when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
