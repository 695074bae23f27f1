"""DPoP proofs and nonce challenges (RFC 9449), without I/O, clocks or randomness of their own.

A proof is a compact JWS (RFC 7515) with header ``{"typ": "dpop+jwt", "alg", "jwk"}`` (the *public* key only,
§4.2) and claims ``jti``, ``htm``, ``htu``, ``iat``, plus ``ath`` (§4.2: base64url SHA-256 of the access token)
when it accompanies an access token at a resource, and ``nonce`` when the server gave one (§8, §9). The caller
passes the time, the ``jti`` and a ``sign`` function (the key lives elsewhere: ``tokensmith.dpop``); this module
only arranges bytes, so every rule is testable without a key library.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from .messages import HttpResponse
from .www_authenticate import parse_www_authenticate

#: The JOSE ``typ`` of a DPoP proof (RFC 9449 §4.2).
PROOF_TYP = "dpop+jwt"
#: The error code of a nonce challenge, at the token endpoint (§8) and at a resource (§9).
USE_DPOP_NONCE = "use_dpop_nonce"

# RFC 7638 §3.2: the required members of a JWK, per key type, that the thumbprint hashes (in this order: sorted).
_THUMBPRINT_MEMBERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
)
# Private members of every key type (RFC 7518 §6, RFC 8037 §2): never in a proof header.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_DEFAULT_PORTS: Mapping[str, str] = MappingProxyType({"https": "443", "http": "80"})


#: What a path may hold unencoded: RFC 3986 reserved and unreserved characters, and "%" (an escape already made).
#: The same set ``requests`` re-quotes a URL with, so the ``htu`` path is the one it puts on the wire.
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _authority(scheme: str, netloc: str) -> str:
    """``host[:port]`` normalised (RFC 3986 §6.2.2.1, §6.2.3): no userinfo (never in a proof, nor in a request),
    lower case, no port when it is the scheme's default (or empty): ``https://as:443/`` *is* ``https://as/``, and
    an internationalised name in its ASCII form (RFC 5891 A-labels), the host an HTTP client sends."""
    host = netloc.rsplit("@", 1)[-1].lower()
    head, colon, port = host.rpartition(":")
    if not colon or "]" in port:  # no port: an IPv6 literal's colons are inside its brackets
        head, port = host, ""
    elif port == _DEFAULT_PORTS.get(scheme):
        port = ""
    if not head.isascii():
        head = _idna(head)
    return f"{head}:{port}" if port else head


def _idna(host: str) -> str:
    """An IDN host as ``requests`` and ``httpx`` send it (IDNA 2008 with UTS #46 mapping, via ``idna``, which
    both depend on); a name that cannot be encoded is left as is (no client can send to it anyway)."""
    import idna  # only for a non-ASCII host

    try:
        return str(idna.encode(host, uts46=True).decode("ascii"))
    except idna.IDNAError:
        return host


def htu(url: str) -> str:
    """The ``htu`` claim: the request URI without query and fragment (RFC 9449 §4.2). Scheme and host are
    lower-cased and a default port dropped (RFC 3986 §6.2.2.1, §6.2.3: what RFC 9449 §4.3 asks servers to
    compare, and what a server rebuilding the URI from its ``Host`` header sees). It is a URI, not an IRI: an
    internationalised host is in its A-label form and a path character a URI cannot hold (non-ASCII, a space)
    percent-encoded as UTF-8, as the HTTP client sends them (the server compares ``htu`` with the request it got,
    §4.3 step 9); the path is otherwise kept as given (existing escapes untouched)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    path = quote(parts.path, safe=_PATH_SAFE) if parts.path else "/"
    return urlunsplit((scheme, _authority(scheme, parts.netloc), path, "", ""))


def origin(url: str) -> str:
    """``scheme://host[:port]`` (normalised as in ``htu``): the unit nonces are remembered by (RFC 6454)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return f"{scheme}://{_authority(scheme, parts.netloc)}"


def ath(access_token: str) -> str:
    """The ``ath`` claim: base64url SHA-256 of the ASCII access token (RFC 9449 §4.2)."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """``jwk`` without any private member, and without ``alg``/``use``/``key_ops`` noise a server might reject."""
    return {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS and k in ("kty", "crv", "x", "y", "n", "e")}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url (the ``jkt`` of RFC 9449 §6.1)."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError(f"unsupported JWK key type {kty!r}")
    try:
        required = {name: jwk[name] for name in members}
    except KeyError as missing:
        raise ValueError(f"JWK is missing {missing.args[0]!r}") from None
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def proof_claims(
    htm: str, url: str, *, iat: int, jti: str, access_token: str | None = None, nonce: str | None = None
) -> dict[str, Any]:
    """The claims of a proof for one request (RFC 9449 §4.2)."""
    claims: dict[str, Any] = {"jti": jti, "htm": htm.upper(), "htu": htu(url), "iat": iat}
    if access_token is not None:
        claims["ath"] = ath(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    return claims


def build_proof(
    sign: Callable[[bytes], bytes],
    alg: str,
    jwk: Mapping[str, Any],
    htm: str,
    url: str,
    *,
    iat: int,
    jti: str,
    access_token: str | None = None,
    nonce: str | None = None,
    header: str | None = None,
) -> str:
    """A compact-serialised DPoP proof. ``sign`` returns the JWS signature (RFC 7518 §3.4 form for ECDSA:
    ``R || S``) over the signing input; ``jwk`` is reduced to its public members here, whatever is passed.
    ``header``: the encoded header from ``proof_header(alg, jwk)``, if the caller keeps it (it never changes
    for a key, and encoding it is a tenth of a proof's cost)."""
    claims = proof_claims(htm, url, iat=iat, jti=jti, access_token=access_token, nonce=nonce)
    signing_input = f"{header or proof_header(alg, jwk)}.{b64url(_json(claims))}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def proof_header(alg: str, jwk: Mapping[str, Any]) -> str:
    """The encoded JOSE header of every proof made with this key (RFC 9449 §4.2)."""
    if alg == "none" or alg.upper().startswith("HS"):
        raise ValueError(f"a DPoP proof needs an asymmetric signature algorithm, not {alg!r} (RFC 9449 §4.2)")
    return b64url(_json({"typ": PROOF_TYP, "alg": alg, "jwk": public_jwk(jwk)}))


def decode_unverified(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a proof, unverified (for tests and diagnostics)."""
    header, claims, _ = proof.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(claims))


def response_nonce(response: HttpResponse) -> str | None:
    """The ``DPoP-Nonce`` header of any response (RFC 9449 §8.1: the latest one replaces the earlier)."""
    value = response.headers.get("dpop-nonce")
    return _nonce_value(value)


def _nonce_value(value: str | None) -> str | None:
    # §8.1: nonce = 1*NQCHAR (%x21 / %x23-5B / %x5D-7E). Anything else is ignored, never echoed into a proof.
    if not value or not all(c == "!" or "#" <= c <= "[" or "]" <= c <= "~" for c in value) or len(value) > 1024:
        return None
    return value


def is_token_nonce_challenge(response: HttpResponse) -> bool:
    """A token endpoint asking for a nonce (RFC 9449 §8): HTTP 400, ``error=use_dpop_nonce``, a usable
    ``DPoP-Nonce`` header."""
    if response.status_code != 400 or response_nonce(response) is None:
        return False
    try:
        body = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(body, dict) and body.get("error") == USE_DPOP_NONCE


def is_resource_nonce_challenge(status_code: int, www_authenticate: str | None, nonce: str | None) -> bool:
    """A resource asking for a nonce (RFC 9449 §9): HTTP 401, ``WWW-Authenticate: DPoP error="use_dpop_nonce"``
    and a usable ``DPoP-Nonce`` header."""
    if status_code != 401 or not www_authenticate or _nonce_value(nonce) is None:
        return False
    return any(
        scheme == "dpop" and params.get("error") == USE_DPOP_NONCE
        for scheme, params in parse_www_authenticate(www_authenticate)
    )


def is_dpop_invalid_token(status_code: int, www_authenticate: str | None) -> bool:
    """A resource rejecting a DPoP-bound token (RFC 9449 §7.1): ``401`` with ``DPoP error="invalid_token"``,
    the DPoP twin of RFC 6750 §3.1's rule (C12): renew once, retry once."""
    if status_code != 401 or not www_authenticate:
        return False
    return any(
        scheme == "dpop" and params.get("error") == "invalid_token"
        for scheme, params in parse_www_authenticate(www_authenticate)
    )


def is_dpop_refusal(status_code: int, www_authenticate: str | None) -> bool:
    """A ``401`` with a ``DPoP`` challenge carrying an error (``invalid_dpop_proof``, ``use_dpop_nonce``,
    ``invalid_token``: RFC 9449 §7.1, §9): what a resource answers a proof made for another URL."""
    if status_code != 401 or not www_authenticate:
        return False
    return any(scheme == "dpop" and "error" in params for scheme, params in parse_www_authenticate(www_authenticate))


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")
