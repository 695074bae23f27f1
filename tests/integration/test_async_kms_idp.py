"""``AsyncTokenClient`` with a KMS or HSM behind its keys, against the real IdP (and the test tree's resource server,
which checks every DPoP proof): the signers and a token exchange's subject-token source take 200 ms each, as a
cloud KMS round trip would, and never run on the event loop's thread; a task ticking every 10 ms keeps ticking
while they run. The IdP verifies each assertion and proof, so what was signed in the worker thread is what was
sent."""

from __future__ import annotations

import threading

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from idp_harness import CC_CLIENT, PKJWT_RSA, LocalIdP, public_jwk
from loop_stalls import Slow, Ticker, run_ticking
from resource_server import ResourceServer, resource_server  # noqa: F401 - the fixture
from tokensmith import AsyncTokenClient, DPoPKey, PrivateKeyJWT, Token, TokenClient, TokenExchangeGrant
from tokensmith.integrations.httpx_auth import TokenAuth

pytestmark = pytest.mark.idp
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def _kms_auth(idp: LocalIdP, ticker: Ticker) -> tuple[PrivateKeyJWT, Slow]:
    key = idp.private_keys[PKJWT_RSA.client_id]
    kms = Slow(ticker, lambda data: bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256())))
    return PrivateKeyJWT(PKJWT_RSA.client_id, kms, alg="RS256", kid=public_jwk(key)["kid"]), kms


def test_private_key_jwt_and_token_exchange_with_a_kms_off_the_loop(idp: LocalIdP) -> None:
    ticker = Ticker()
    auth, kms = _kms_auth(idp, ticker)
    subject = TokenClient.from_issuer(idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, scope="api:read")
    source = Slow(ticker, lambda: subject.fetch_client_credentials().access_token)  # a vault, a rotating file

    async def work() -> tuple[Token, Token]:
        async with AsyncTokenClient.from_issuer(idp.issuer, PKJWT_RSA.client_id, auth=auth) as client:
            own = await client.get_token()
        async with AsyncTokenClient.from_issuer(
            idp.issuer, PKJWT_RSA.client_id, auth=auth, grant=TokenExchangeGrant(source), scope="api:read"
        ) as exchanger:
            return own, await exchanger.get_token()

    own, exchanged = run_ticking(ticker, work)
    assert own.access_token and exchanged.issued_token_type == ACCESS_TOKEN_TYPE
    kms.assert_off_loop(ticker, calls=2)  # one assertion per token request
    source.assert_off_loop(ticker, calls=1)


def test_a_dpop_key_in_an_hsm_signs_off_the_loop_at_the_token_endpoint_and_the_resource(
    idp: LocalIdP,
    resource_server: ResourceServer,  # noqa: F811
) -> None:
    """RFC 9449 §5 and §7 with ``DPoPKey.from_signer`` through ``httpx.AsyncClient(auth=TokenAuth(client))``; the
    resource asks for a nonce first (§9), so its request is signed twice."""
    resource_server.require_nonce = True
    ticker = Ticker()
    real = DPoPKey.generate()
    hsm = Slow(ticker, real._sign)
    key = DPoPKey.from_signer(hsm, real.public_jwk, "ES256")

    async def work() -> int:
        async with (
            AsyncTokenClient.from_issuer(
                idp.issuer,
                CC_CLIENT.client_id,
                CC_CLIENT.client_secret,
                resource=resource_server.resource,
                scope="api:read",
                dpop=key,
            ) as client,
            httpx.AsyncClient(auth=TokenAuth(client)) as http,
        ):
            return (await http.get(resource_server.resource)).status_code

    assert run_ticking(ticker, work) == 200
    assert resource_server.events == ["asked for a nonce", "ok: dpop"]
    hsm.assert_off_loop(ticker, calls=3, thread_prefix=None)  # the token request, the resource request twice
    assert hsm.threads[0].name.startswith("tokensmith-store")
    assert all(thread is not threading.main_thread() for thread in hsm.threads)
