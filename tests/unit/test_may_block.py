"""Which objects say building a request with them ``may_block`` (a user's callable: a KMS or HSM signer, a
credential source), so ``AsyncTokenClient`` builds that request in a worker thread; in-memory keys and secrets
never do (signing them takes microseconds, less than a thread hop)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tokensmith import (
    ClientSecretBasic,
    ClientSecretJWT,
    DPoPKey,
    JWTBearerGrant,
    NoClientAuth,
    PrivateKeyJWT,
    TokenExchangeGrant,
)
from tokensmith._protocol.client_auth import may_block

KEY = ec.generate_private_key(ec.SECP256R1())


def kms(data: bytes) -> bytes:
    return KEY.sign(data, ec.ECDSA(hashes.SHA256()))


def test_client_authentication() -> None:
    assert may_block(PrivateKeyJWT("svc", kms, alg="ES256"))
    assert may_block(PrivateKeyJWT("svc", kms, alg="ES256", audience="issuer").with_issuer("https://as"))
    assert not may_block(PrivateKeyJWT("svc", KEY))
    assert not may_block(ClientSecretJWT("svc", "secret"))
    assert not may_block(ClientSecretBasic("svc", "secret"))
    assert not may_block(NoClientAuth("svc"))


def test_grants() -> None:
    assert JWTBearerGrant(lambda: "a.b.c").may_block
    assert not JWTBearerGrant("a.b.c").may_block
    assert JWTBearerGrant.signed(kms, issuer="i", subject="s", audience="a", alg="ES256").may_block
    assert not JWTBearerGrant.signed(KEY, issuer="i", subject="s", audience="a").may_block
    assert TokenExchangeGrant(lambda: "subject").may_block
    assert TokenExchangeGrant("subject", actor_token=lambda: "actor", actor_token_type="t").may_block
    assert not TokenExchangeGrant("subject", actor_token="actor", actor_token_type="t").may_block


def test_dpop_keys() -> None:
    real = DPoPKey.generate()
    assert not real.may_block
    assert DPoPKey.from_signer(real._sign, real.public_jwk, "ES256").may_block
