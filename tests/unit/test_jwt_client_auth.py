"""Issue 11 part 1: JWT client authentication built sans-IO (RFC 7523 §2.2/§3, OIDC Core §9, C2, C31).

Every assertion is verified with PyJWT: signature, header (alg, kid, typ) and claims (iss = sub = client_id, aud,
exp, iat, a fresh jti per request)."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tokensmith import ClientSecretBasic, ClientSecretJWT, ConfigurationError, PrivateKeyJWT
from tokensmith._protocol.device import device_authorization_request
from tokensmith._protocol.jwt_assertion import (
    CLIENT_ASSERTION_TYPE,
    assertion_claims,
    check_alg,
    choose_audience,
    jwk_thumbprint,
    unverified_claims,
)
from tokensmith._protocol.revocation import revocation_request
from tokensmith._protocol.token import token_request

TOKEN_URL = "https://as.example/oauth/token"
ISSUER = "https://as.example"
NOW = 1_700_000_000.0
SECRET = "a-client-secret-that-is-long-enough-for-hs512-0123456789abcdefghijkl"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _counter() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"jti-{n}"


def _sent(auth: Any, url: str = TOKEN_URL) -> tuple[dict[str, str], dict[str, str], str]:
    """Form, headers and the assertion of one client-credentials request built with ``auth``."""
    request = token_request(url, "client_credentials", auth)
    form = dict(request.form)
    assert [name for name, _ in request.form].count("client_assertion") == 1
    return form, dict(request.headers), form["client_assertion"]


def _verify(assertion: str, key: Any, alg: str, audience: str = TOKEN_URL) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        assertion, key, algorithms=[alg], audience=audience, options={"verify_exp": False, "verify_iat": False}
    )
    return claims


# -- the claims and the header (C31) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_private_key_jwt_rsa_claims_header_and_signature(rsa_key: rsa.RSAPrivateKey, alg: str) -> None:
    """RFC 7523 §3: iss = sub = client_id, aud = the token endpoint, exp short, iat, jti; signed with the key."""
    auth = PrivateKeyJWT("svc", _pem(rsa_key), alg=alg, clock=lambda: NOW)
    form, headers, assertion = _sent(auth)
    assert form["client_assertion_type"] == CLIENT_ASSERTION_TYPE and form["client_id"] == "svc"
    assert "Authorization" not in headers and "client_secret" not in form  # one method only (C2)
    claims = _verify(assertion, rsa_key.public_key(), alg)
    assert claims["iss"] == claims["sub"] == "svc" and claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(NOW) and claims["exp"] == int(NOW) + 60 and claims["jti"]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == alg and header["typ"] == "JWT"
    # No kid given and a PEM key: the RFC 7638 thumbprint of the public key.
    assert header["kid"] == jwk_thumbprint(RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True))


@pytest.mark.parametrize(("curve", "alg"), [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384")])
def test_private_key_jwt_ec_key_object_picks_its_algorithm(curve: ec.EllipticCurve, alg: str) -> None:
    key = ec.generate_private_key(curve)
    _, _, assertion = _sent(PrivateKeyJWT("svc", key))
    assert jwt.get_unverified_header(assertion)["alg"] == alg
    assert _verify(assertion, key.public_key(), alg)["sub"] == "svc"


def test_private_key_jwt_eddsa() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    _, _, assertion = _sent(PrivateKeyJWT("svc", key, kid="ed-1"))
    assert jwt.get_unverified_header(assertion) == {"alg": "EdDSA", "kid": "ed-1", "typ": "JWT"}
    _verify(assertion, key.public_key(), "EdDSA")
    assert OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)["crv"] == "Ed25519"


def test_a_jwk_gives_its_kid_and_alg(ec_key: ec.EllipticCurvePrivateKey) -> None:
    jwk = {**ECAlgorithm.to_jwk(ec_key, as_dict=True), "kid": "from-the-jwk", "alg": "ES256"}
    auth = PrivateKeyJWT("svc", jwk)
    _, _, assertion = _sent(auth)
    assert jwt.get_unverified_header(assertion)["kid"] == "from-the-jwk"
    _verify(assertion, ec_key.public_key(), "ES256")
    # An explicit kid wins over the JWK's.
    _, _, assertion = _sent(PrivateKeyJWT("svc", jwk, kid="explicit"))
    assert jwt.get_unverified_header(assertion)["kid"] == "explicit"


def test_an_encrypted_pem_with_its_password(ec_key: ec.EllipticCurvePrivateKey) -> None:
    encrypted = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pem-password"),
    )
    for password in ("pem-password", b"pem-password"):
        _verify(_sent(PrivateKeyJWT("svc", encrypted, password=password))[2], ec_key.public_key(), "ES256")
    with pytest.raises(ConfigurationError):
        _sent(PrivateKeyJWT("svc", encrypted, password="wrong"))
    with pytest.raises(ConfigurationError):
        _sent(PrivateKeyJWT("svc", encrypted))


def test_the_rfc_7638_example_thumbprint() -> None:
    """RFC 7638 §3.1's worked example."""
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
            "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
            "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_"
            "xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_client_secret_jwt_is_maced_with_the_secret(alg: str) -> None:
    """OIDC Core §9 client_secret_jwt: HMAC with the secret; the secret itself is never sent."""
    form, headers, assertion = _sent(ClientSecretJWT("svc", SECRET, alg, clock=lambda: NOW))
    assert SECRET not in str(form) and "Authorization" not in headers
    claims = _verify(assertion, SECRET, alg)
    assert claims["iss"] == claims["sub"] == "svc" and claims["exp"] - claims["iat"] == 60
    assert "kid" not in jwt.get_unverified_header(assertion)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(assertion, SECRET + "x", algorithms=[alg], audience=TOKEN_URL, options={"verify_exp": False})


def test_every_request_gets_a_new_jti(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """OIDC Core §9: the jti is unique; the server refuses one it has seen. Built per request, and a rebuilt
    request (retry, next poll: HttpRequest.fresh) carries a new one while the rest stays the same."""
    auth = PrivateKeyJWT("svc", ec_key)
    jtis = {_verify(_sent(auth)[2], ec_key.public_key(), "ES256")["jti"] for _ in range(50)}
    assert len(jtis) == 50 and all(len(j) >= 32 for j in jtis)  # 192 random bits, base64url
    first = token_request(TOKEN_URL, "client_credentials", auth, scope="a b", params=[("resource", ["r1", "r2"])])
    again = first.fresh()
    assert again is not first
    assert [p for p in again.form if p[0] != "client_assertion"] == [
        p for p in first.form if p[0] != "client_assertion"
    ]
    assert dict(again.form)["client_assertion"] != dict(first.form)["client_assertion"]
    assert dict(again.form)["client_assertion"] in again.secrets


def test_a_reusable_method_is_not_rebuilt() -> None:
    request = token_request(TOKEN_URL, "client_credentials", ClientSecretBasic("svc", "s3cret"))
    assert request.fresh() is request


def test_injected_jti_and_lifetime() -> None:
    jtis = _counter()
    auth = ClientSecretJWT("svc", SECRET, new_jti=lambda: next(jtis), lifetime=30, clock=lambda: NOW)
    claims = [_verify(_sent(auth)[2], SECRET, "HS256") for _ in range(2)]
    assert [c["jti"] for c in claims] == ["jti-1", "jti-2"] and claims[0]["exp"] == int(NOW) + 30


# -- the audience ---------------------------------------------------------------------------------------------------


def test_aud_is_the_endpoint_called(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """C29/C13: revocation and device authorization authenticate like the token endpoint, aud = that endpoint."""
    auth = PrivateKeyJWT("svc", ec_key)
    revoke = revocation_request("https://as.example/revoke", auth, "tok-123456")
    device = device_authorization_request("https://as.example/device", auth, scope="openid")
    for request in (revoke, device):
        assert _verify(dict(request.form)["client_assertion"], ec_key.public_key(), "ES256", request.url)
    assert [name for name, _ in device.form].count("client_id") == 1
    assert revoke.fresh() is not revoke


def test_aud_the_issuer_or_an_explicit_value() -> None:
    by_issuer = ClientSecretJWT("svc", SECRET, audience="issuer", issuer=ISSUER)
    assert _verify(_sent(by_issuer)[2], SECRET, "HS256", ISSUER)["aud"] == ISSUER
    explicit = ClientSecretJWT("svc", SECRET, audience="https://login.example/tenant/v2.0")
    assert _verify(_sent(explicit)[2], SECRET, "HS256", "https://login.example/tenant/v2.0")
    # A client fills in its issuer; an issuer given to the method itself wins.
    bound = ClientSecretJWT("svc", SECRET, audience="issuer").with_issuer(ISSUER)
    assert _verify(_sent(bound)[2], SECRET, "HS256", ISSUER)
    assert by_issuer.with_issuer("https://other.example") is by_issuer
    endpoint = ClientSecretJWT("svc", SECRET)
    assert endpoint.with_issuer(ISSUER) is endpoint  # nothing to fill in: the caller's own object


def test_aud_issuer_without_an_issuer_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="issuer"):
        _sent(ClientSecretJWT("svc", SECRET, audience="issuer"))


def test_plain_apply_needs_to_know_the_audience() -> None:
    """``ClientAuth.apply`` (no endpoint) works with an issuer or explicit audience, and says so otherwise."""
    form: list[tuple[str, str]] = []
    ClientSecretJWT("svc", SECRET, audience="issuer", issuer=ISSUER).apply(form, {})
    assert _verify(dict(form)["client_assertion"], SECRET, "HS256", ISSUER)
    with pytest.raises(ConfigurationError, match="endpoint"):
        ClientSecretJWT("svc", SECRET).apply([], {})


def test_the_pure_core() -> None:
    claims = assertion_claims(
        issuer="i", subject="s", audience="a", now=NOW + 0.9, lifetime=60, jti="j", extra={"iss": "x", "n": 1}
    )
    assert claims == {"iss": "i", "sub": "s", "aud": "a", "iat": int(NOW), "exp": int(NOW) + 60, "jti": "j", "n": 1}
    assert choose_audience("endpoint", endpoint="https://e", issuer=None) == "https://e"
    assert choose_audience("urn:x", endpoint="https://e", issuer="https://i") == "urn:x"
    assert unverified_claims("not-a-jwt") is None and unverified_claims("a.!!!.c") is None
    with pytest.raises(ConfigurationError):
        assertion_claims(issuer="i", subject="s", audience="a", now=NOW, lifetime=0, jti="j")
    with pytest.raises(ConfigurationError):
        assertion_claims(issuer="i", subject="s", audience="a", now=NOW, lifetime=60, jti="")


# -- a callable signer (HSM, KMS) -------------------------------------------------------------------------------------


def test_a_callable_signer_der_ecdsa_becomes_raw(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """A KMS returns DER for ECDSA; JWS needs raw r||s (RFC 7518 §3.4). The key never reaches tokensmith."""
    signed: list[bytes] = []

    def kms_sign(data: bytes) -> bytes:
        signed.append(data)
        return ec_key.sign(data, ec.ECDSA(hashes.SHA256()))  # DER

    _, _, assertion = _sent(PrivateKeyJWT("svc", kms_sign, alg="ES256", kid="kms-key-1"))
    assert jwt.get_unverified_header(assertion) == {"alg": "ES256", "kid": "kms-key-1", "typ": "JWT"}
    assert _verify(assertion, ec_key.public_key(), "ES256")["iss"] == "svc"
    assert signed == [assertion.rsplit(".", 1)[0].encode()]


def test_a_callable_rsa_signer(rsa_key: rsa.RSAPrivateKey) -> None:
    from cryptography.hazmat.primitives.asymmetric import padding

    def sign(data: bytes) -> bytes:
        return rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    _, _, assertion = _sent(PrivateKeyJWT("svc", sign, alg="RS256"))
    assert "kid" not in jwt.get_unverified_header(assertion)
    _verify(assertion, rsa_key.public_key(), "RS256")


def test_a_signer_needs_an_alg_and_must_sign() -> None:
    with pytest.raises(ConfigurationError, match="alg"):
        PrivateKeyJWT("svc", lambda data: b"sig")
    with pytest.raises(ConfigurationError, match="signature"):
        _sent(PrivateKeyJWT("svc", lambda data: b"", alg="RS256"))
    with pytest.raises(ConfigurationError, match="DER"):
        _sent(PrivateKeyJWT("svc", lambda data: b"\x01" * 10, alg="ES256"))


# -- refused configurations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused_before_any_request(alg: str, ec_key: ec.EllipticCurvePrivateKey) -> None:
    """RFC 7523 §3: the JWT MUST be signed or MACed."""
    with pytest.raises(ConfigurationError, match="none"):
        PrivateKeyJWT("svc", ec_key, alg=alg)
    with pytest.raises(ConfigurationError, match="none"):
        ClientSecretJWT("svc", SECRET, alg)
    with pytest.raises(ConfigurationError, match="none"):
        check_alg(alg, frozenset({"HS256"}), "test")


def test_algorithms_of_the_wrong_family_are_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigurationError):
        PrivateKeyJWT("svc", ec_key, alg="HS256")  # a MAC is not a private-key signature
    with pytest.raises(ConfigurationError):
        ClientSecretJWT("svc", SECRET, "RS256")
    with pytest.raises(ConfigurationError, match="does not fit"):
        _sent(PrivateKeyJWT("svc", ec_key, alg="ES384"))  # a P-256 key
    with pytest.raises(ConfigurationError, match="does not fit"):
        _sent(PrivateKeyJWT("svc", ec_key, alg="RS256"))


def test_rsa_keys_shorter_than_2048_bits_are_refused() -> None:
    """RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used" with RS256/PS256 and their kin."""
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    for alg in ("RS256", "PS256"):
        with pytest.raises(ConfigurationError, match="1024-bit RSA key is too short"):
            _sent(PrivateKeyJWT("svc", short, alg=alg))
    with pytest.raises(ConfigurationError, match="too short"):
        _sent(PrivateKeyJWT("svc", _pem(short)))


def test_unusable_keys_are_refused_without_showing_them(ec_key: ec.EllipticCurvePrivateKey) -> None:
    public = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    with pytest.raises(ConfigurationError, match="private part"):
        PrivateKeyJWT("svc", public)
    with pytest.raises(ConfigurationError, match="ClientSecretJWT"):
        PrivateKeyJWT("svc", {"kty": "oct", "k": "c2VjcmV0"})
    garbage = (
        "-----BEGIN PRIVATE KEY-----\nTUlJQ2VRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NBbU13\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        _sent(PrivateKeyJWT("svc", garbage))
    assert "TUlJQ2VR" not in str(caught.value)
    for bad in (None, "", b""):
        with pytest.raises(ConfigurationError):
            PrivateKeyJWT("svc", bad)
    with pytest.raises(ConfigurationError):
        ClientSecretJWT("svc", "")
    with pytest.raises(ConfigurationError):
        ClientSecretJWT("", SECRET)


def test_missing_pyjwt_is_a_clear_configuration_error(
    monkeypatch: pytest.MonkeyPatch, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """PyJWT is the optional ``jwt`` extra, imported on the first private-key signature only; client_secret_jwt
    needs only the standard library."""
    real_import = builtins.__import__

    def no_jwt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "jwt" or name.startswith("jwt."):
            raise ImportError("No module named 'jwt'")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "jwt" or m.startswith("jwt.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_jwt)
    auth = PrivateKeyJWT("svc", _pem(ec_key))  # constructing needs nothing
    with pytest.raises(ConfigurationError, match=r"tokensmith\[jwt\]"):
        _sent(auth)
    form, _, _ = _sent(ClientSecretJWT("svc", SECRET))
    assert form["client_assertion_type"] == CLIENT_ASSERTION_TYPE


# -- secrets stay secret (C10) ---------------------------------------------------------------------------------------


def test_reprs_hide_keys_secrets_and_assertions(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key)
    auth = PrivateKeyJWT("svc", pem)
    request = token_request(TOKEN_URL, "client_credentials", auth)
    assertion = dict(request.form)["client_assertion"]
    body = pem.decode().splitlines()[1]
    for shown in (repr(auth), str(auth), repr(request)):
        assert body not in shown and assertion not in shown and assertion[:40] not in shown
    assert "svc" in repr(auth)
    secret_auth = ClientSecretJWT("svc", SECRET)
    assert SECRET not in repr(secret_auth) and SECRET[:8] not in repr(secret_auth)
    assert request.secrets == (assertion,)


def test_the_new_names_are_public() -> None:
    """DESIGN: every class a user meets is importable from ``tokensmith`` and says so."""
    import tokensmith

    for name in ("PrivateKeyJWT", "ClientSecretJWT", "JWTBearerGrant", "TokenExchangeGrant", "ConfigurationError"):
        assert name in tokensmith.__all__ and getattr(tokensmith, name).__module__ == "tokensmith", name
    assert issubclass(tokensmith.ConfigurationError, tokensmith.TokensmithError)
    assert issubclass(tokensmith.ConfigurationError, ValueError)
