"""Issue 11 against the real IdP (node oidc-provider, tests/idp/server.mjs): secretless client authentication and
the extension grants, through the public API only.

- ``private_key_jwt`` (RSA as PEM, P-256 as a JWK, P-384 as a key object, RSA through a callable signer) and
  ``client_secret_jwt``: client credentials, a device login (several polls, each its own jti), refresh and
  revocation (RFC 7523 §2.2, OIDC Core §9, RFC 7009; C29, C31);
- the IdP's verdicts: a replayed jti, a wrong key and an expired assertion are ``InvalidClient``;
- token exchange (RFC 8693, C30) and the JWT bearer grant (RFC 7523 §2.1) through ``TokenClient`` and
  ``AsyncTokenClient``: cached by what changes the token, renewed by re-running the grant, ``issued_token_type``
  kept and stored;
- secrets never leak: no assertion, key or subject token in a log record, a repr, an error or a store file (C10).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from jwt.algorithms import ECAlgorithm

from idp_harness import (
    CC_CLIENT,
    CSJWT_CLIENT,
    EXCHANGE_CLIENT,
    PKJWT_EC,
    PKJWT_ES384,
    PKJWT_RSA,
    TRUSTED_ISSUER,
    LocalIdP,
    public_jwk,
)
from tokensmith import (
    AsyncTokenClient,
    ClientSecretJWT,
    ConfigurationError,
    FileStore,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    JWTBearerGrant,
    LoginRequired,
    PollOutcome,
    PollProgress,
    PrivateKeyJWT,
    TokenClient,
    TokenExchangeGrant,
    Transport,
)
from tokensmith.revocation import revoke

pytestmark = pytest.mark.idp

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
METHODS = ["rsa-pem", "ec-jwk", "es384-key", "rsa-signer", "client-secret-jwt"]


def _auth(idp: LocalIdP, method: str, **kwargs: Any) -> PrivateKeyJWT | ClientSecretJWT:
    """Each way of authenticating with a JWT the IdP has a client for."""
    if method == "rsa-pem":
        return PrivateKeyJWT(PKJWT_RSA.client_id, idp.private_key_pem(PKJWT_RSA.client_id), **kwargs)
    if method == "ec-jwk":
        key = idp.private_keys[PKJWT_EC.client_id]
        jwk = {**ECAlgorithm.to_jwk(key, as_dict=True), "kid": public_jwk(key)["kid"]}
        return PrivateKeyJWT(PKJWT_EC.client_id, jwk, **kwargs)
    if method == "es384-key":
        return PrivateKeyJWT(PKJWT_ES384.client_id, idp.private_keys[PKJWT_ES384.client_id], **kwargs)
    if method == "rsa-signer":  # an HSM/KMS: only a signing function reaches tokensmith
        key = idp.private_keys[PKJWT_RSA.client_id]

        def sign(data: bytes) -> bytes:
            return bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))

        return PrivateKeyJWT(PKJWT_RSA.client_id, sign, alg="RS256", kid=public_jwk(key)["kid"], **kwargs)
    assert CSJWT_CLIENT.client_secret is not None
    return ClientSecretJWT(CSJWT_CLIENT.client_id, CSJWT_CLIENT.client_secret, **kwargs)


class RecordingTransport(Transport):
    """Remembers every form sent, to prove what was (and was not) on the wire and that nothing leaks."""

    def __init__(self) -> None:
        session = requests.Session()
        session.trust_env = False
        super().__init__(session)
        self.forms: list[dict[str, str]] = []

    def post(self, request: Any) -> Any:
        self.forms.append(dict(request.form))
        return super().post(request)

    def assertions(self) -> list[str]:
        return [f[name] for f in self.forms for name in ("client_assertion", "assertion") if name in f]


def _introspect(idp: LocalIdP, token: str, auth: Any) -> dict[str, Any]:
    """RFC 7662 introspection as the token's own client (the only one the IdP tells), authenticated with ``auth``."""
    form: list[tuple[str, str]] = [("token", token)]
    headers: dict[str, str] = {}
    auth.apply_to(idp.introspection_endpoint, form, headers)
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(idp.introspection_endpoint, data=form, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# -- client authentication: each method, each grant, revocation -----------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_client_credentials_and_revocation(idp: LocalIdP, method: str) -> None:
    """C31 at the token endpoint, C29 at the revocation endpoint (aud = the endpoint called each time)."""
    auth = _auth(idp, method)
    transport = RecordingTransport()
    client = TokenClient.from_issuer(idp.issuer, auth.client_id, auth=auth, scope="api:read", transport=transport)
    token = client.get_token()
    assert token.scope == "api:read" and _introspect(idp, token.access_token, auth)["active"] is True
    revoke(client, token.access_token, token_type_hint="access_token")
    assert _introspect(idp, token.access_token, auth)["active"] is False
    sent = transport.assertions()
    assert len(sent) == 2 and sent[0] != sent[1]
    assert [jwt.decode(a, options={"verify_signature": False})["aud"] for a in sent] == [
        idp.token_endpoint,
        idp.revocation_endpoint,
    ]


def test_private_key_argument_picks_private_key_jwt_from_the_metadata(idp: LocalIdP) -> None:
    client = TokenClient.from_issuer(
        idp.issuer, PKJWT_EC.client_id, private_key=idp.private_key_pem(PKJWT_EC.client_id), scope="api:read"
    )
    assert client.get_token().scope == "api:read"
    assert isinstance(client.auth, PrivateKeyJWT) and client.auth.client_id == PKJWT_EC.client_id


def test_audience_issuer_is_accepted(idp: LocalIdP) -> None:
    auth = _auth(idp, "es384-key", audience="issuer")
    transport = RecordingTransport()
    TokenClient.from_issuer(idp.issuer, auth.client_id, auth=auth, transport=transport).get_token()
    assert jwt.decode(transport.assertions()[0], options={"verify_signature": False})["aud"] == idp.issuer


@pytest.mark.parametrize("method", ["ec-jwk", "client-secret-jwt"])
def test_device_login_refresh_and_revoking_the_refresh_token(idp: LocalIdP, method: str) -> None:
    """A confidential device client authenticates at the device endpoint and on every poll with a new assertion
    (RFC 8628 §3.1/§3.4), refreshes (RFC 6749 §6, rotation) and revokes its refresh token (RFC 7009)."""
    auth = _auth(idp, method)
    transport = RecordingTransport()
    client = TokenClient.from_issuer(
        idp.issuer, auth.client_id, auth=auth, grant="device_code", scope="openid offline_access", transport=transport
    )
    codes: list[str] = []

    def on_progress(progress: PollProgress) -> None:  # approve only after a first pending poll
        if progress.outcome is PollOutcome.PENDING and len(codes) == 1:
            codes.append("approved")
            threading.Thread(target=idp.approve, args=(codes[0],), daemon=True).start()

    token = client.login(on_prompt=lambda prompt: codes.append(prompt.user_code), on_progress=on_progress)
    assert token.refresh_token and len(transport.forms) >= 3  # device authorization + at least two polls
    polls = [f for f in transport.forms if f.get("grant_type", "").endswith("device_code")]
    assert len(polls) >= 2 and len({f["client_assertion"] for f in polls}) == len(polls)
    renewed = client.refresh()
    assert renewed.access_token != token.access_token and renewed.refresh_token != token.refresh_token
    assert renewed.refresh_token is not None
    revoke(client, renewed.refresh_token, token_type_hint="refresh_token")
    with pytest.raises(LoginRequired):
        client.refresh()  # the server now answers invalid_grant


def test_browser_login_with_private_key_jwt(idp: LocalIdP, monkeypatch: pytest.MonkeyPatch) -> None:
    """The authorization code exchange (RFC 6749 §4.1.3 + PKCE) of a confidential native client authenticates with
    an assertion for the token endpoint, and its refresh token renews with another."""
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.setenv("BROWSER", "true")  # a browser "opens" (nothing); the harness plays the person

    def on_prompt(prompt: Any) -> None:
        threading.Thread(target=idp.authorize, args=(prompt.url,), daemon=True).start()

    auth = _auth(idp, "es384-key")
    transport = RecordingTransport()
    client = TokenClient.from_issuer(
        idp.issuer, auth.client_id, auth=auth, login_flow="browser", scope="openid offline_access", transport=transport
    )
    token = client.login(on_prompt=on_prompt)
    renewed = client.refresh()
    assert token.refresh_token and renewed.access_token != token.access_token
    assert [f["grant_type"] for f in transport.forms] == ["authorization_code", "refresh_token"]
    claims = [jwt.decode(f["client_assertion"], options={"verify_signature": False}) for f in transport.forms]
    assert all(c["aud"] == idp.token_endpoint and c["iss"] == c["sub"] == auth.client_id for c in claims)
    assert claims[0]["jti"] != claims[1]["jti"] and "client_secret" not in transport.forms[0]


# -- the IdP's verdicts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rsa-pem", "client-secret-jwt"])
def test_a_replayed_jti_is_refused_by_the_idp(idp: LocalIdP, method: str) -> None:
    """OIDC Core §9 / RFC 7523 §3: the server refuses a jti it has seen (oidc-provider's replay detection)."""
    jti = f"replayed-{uuid.uuid4()}"
    client = TokenClient.from_issuer(idp.issuer, auth=_auth(idp, method, new_jti=lambda: jti), client_id=None)
    client.fetch_client_credentials()
    with pytest.raises(InvalidClient) as caught:
        client.fetch_client_credentials()
    assert caught.value.status_code in (400, 401)


def test_a_wrong_key_is_refused(idp: LocalIdP) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    with_its_kid = PrivateKeyJWT(
        PKJWT_EC.client_id, stranger, kid=public_jwk(idp.private_keys[PKJWT_EC.client_id])["kid"]
    )
    for auth in (PrivateKeyJWT(PKJWT_EC.client_id, stranger), with_its_kid):
        with pytest.raises(InvalidClient):
            TokenClient.from_issuer(idp.issuer, PKJWT_EC.client_id, auth=auth).get_token()
    with pytest.raises(InvalidClient):
        TokenClient.from_issuer(
            idp.issuer, CSJWT_CLIENT.client_id, auth=ClientSecretJWT(CSJWT_CLIENT.client_id, "x" * 64)
        ).get_token()


def test_an_expired_assertion_is_refused(idp: LocalIdP) -> None:
    auth = _auth(idp, "rsa-pem", clock=lambda: time.time() - 3600)
    with pytest.raises(InvalidClient):
        TokenClient.from_issuer(idp.issuer, auth.client_id, auth=auth).get_token()


def test_alg_none_is_refused_before_anything_is_sent(idp: LocalIdP) -> None:
    with pytest.raises(ConfigurationError):
        PrivateKeyJWT(PKJWT_EC.client_id, idp.private_keys[PKJWT_EC.client_id], alg="none")
    transport = RecordingTransport()
    signer = PrivateKeyJWT(PKJWT_EC.client_id, idp.private_keys[PKJWT_EC.client_id], alg="ES384")  # a P-256 key
    with pytest.raises(ConfigurationError):
        TokenClient.from_issuer(idp.issuer, PKJWT_EC.client_id, auth=signer, transport=transport).get_token()
    assert transport.forms == []


# -- token exchange (RFC 8693) --------------------------------------------------------------------------------------


def _subject_token(idp: LocalIdP) -> str:
    client = TokenClient.from_issuer(idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, scope="api:read")
    return client.fetch_client_credentials().access_token


def _exchanger(idp: LocalIdP, grant: Any, **kwargs: Any) -> TokenClient:
    return TokenClient.from_issuer(
        idp.issuer, EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret, grant=grant, scope="api:read", **kwargs
    )


def test_token_exchange_through_token_client_is_cached_and_stored(idp: LocalIdP, tmp_path: Path) -> None:
    """C30: issued_token_type kept on the Token and in the store; a second client (process) reads it from there."""
    subject = _subject_token(idp)
    store = FileStore(tmp_path)
    client = _exchanger(idp, TokenExchangeGrant(subject, audience=["api-a", "api-b"]), store=store)
    token = client.get_token()
    assert token.issued_token_type == ACCESS_TOKEN_TYPE and token.scope == "api:read"
    assert token.access_token != subject and client.get_token() is token and client.stats.token_requests == 1
    again = _exchanger(idp, TokenExchangeGrant(subject, audience=["api-a", "api-b"]), store=store)
    assert again.get_token() == token and again.stats.token_requests == 0
    assert again.get_token().issued_token_type == ACCESS_TOKEN_TYPE
    for path in tmp_path.rglob("*"):
        assert subject not in path.name
        if path.is_file():
            assert subject.encode() not in path.read_bytes()


def test_two_subject_tokens_are_two_entries(idp: LocalIdP, tmp_path: Path) -> None:
    """Caching keyed by what changes the token: two subjects, two requests, two entries; the same, one request."""
    first, second = _subject_token(idp), _subject_token(idp)
    store = FileStore(tmp_path)
    a = _exchanger(idp, TokenExchangeGrant(first), store=store)
    b = _exchanger(idp, TokenExchangeGrant(second), store=store)
    a_again = _exchanger(idp, TokenExchangeGrant(first), store=store)
    ta, tb, ta_again = a.get_token(), b.get_token(), a_again.get_token()
    assert ta.access_token != tb.access_token and ta_again == ta
    assert (a.stats.token_requests, b.stats.token_requests, a_again.stats.token_requests) == (1, 1, 0)
    assert a.cache_key != b.cache_key and store.load(a.cache_key) == ta and store.load(b.cache_key) == tb


def test_token_exchange_with_an_actor_and_a_jwt_subject_secretlessly(idp: LocalIdP) -> None:
    """A private_key_jwt client exchanges a trusted issuer's JWT, with an actor token (delegation)."""
    now = int(time.time())
    subject = jwt.encode(
        {"iss": TRUSTED_ISSUER, "sub": "workload-7", "aud": idp.issuer, "iat": now, "exp": now + 120},
        idp.private_keys[TRUSTED_ISSUER],
        algorithm="ES256",
    )
    grant = TokenExchangeGrant(
        subject, JWT_TOKEN_TYPE, actor_token=_subject_token(idp), actor_token_type=ACCESS_TOKEN_TYPE
    )
    client = TokenClient.from_issuer(
        idp.issuer, PKJWT_RSA.client_id, private_key=idp.private_key_pem(PKJWT_RSA.client_id), grant=grant
    )
    token = client.get_token()
    assert token.issued_token_type == ACCESS_TOKEN_TYPE
    assert _introspect(idp, token.access_token, client.auth)["active"] is True


def test_exchange_token_one_shot_and_its_failures(idp: LocalIdP, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    client = _exchanger(idp, "client_credentials", store=store)
    token = client.exchange_token(
        _subject_token(idp), resource="https://other-api.tokensmith.test/", scope="other:read"
    )
    assert token.scope == "other:read" and token.issued_token_type == ACCESS_TOKEN_TYPE
    assert list(tmp_path.glob("*.json")) == []  # one-shot: not stored
    with pytest.raises(InvalidGrant):
        client.exchange_token("not-a-token-this-server-issued")
    with pytest.raises(InvalidRequest):
        client.exchange_token(_subject_token(idp), requested_token_type="urn:ietf:params:oauth:token-type:saml2")
    with pytest.raises(InvalidGrant):  # RFC 8693: a revoked subject token is no longer exchangeable
        subject = _subject_token(idp)
        cc = TokenClient.from_issuer(idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret)
        revoke(cc, subject, token_type_hint="access_token")
        client.exchange_token(subject)


# -- JWT bearer grant (RFC 7523 §2.1) -------------------------------------------------------------------------------


def _bearer_assertion(idp: LocalIdP, sub: str = "workload-1", key: Any = None) -> str:
    now = int(time.time())
    claims = {"iss": TRUSTED_ISSUER, "sub": sub, "aud": idp.issuer, "iat": now, "exp": now + 60}
    return jwt.encode({**claims, "jti": secrets.token_urlsafe(16)}, key or idp.private_keys[TRUSTED_ISSUER], "ES256")


def test_jwt_bearer_grant_renews_by_re_running_the_grant(idp: LocalIdP) -> None:
    made: list[str] = []

    def assertion() -> str:
        made.append(_bearer_assertion(idp))
        return made[-1]

    transport = RecordingTransport()
    client = _exchanger(idp, JWTBearerGrant(assertion, cache_id="workload-1"), transport=transport)
    token = client.get_token()
    assert client.get_token() is token and len(made) == 1
    renewed = client.get_token(stale=token)  # a resource server said invalid_token: the grant runs again
    assert renewed.access_token != token.access_token and len(made) == 2
    assert [f["assertion"] for f in transport.forms] == made


def test_jwt_bearer_grant_signed_here(idp: LocalIdP) -> None:
    """``JWTBearerGrant.signed``: a new assertion per request, accepted by the IdP, renewed by signing again."""
    grant = JWTBearerGrant.signed(
        idp.private_key_pem(TRUSTED_ISSUER), issuer=TRUSTED_ISSUER, subject="workload-9", audience=idp.token_endpoint
    )
    transport = RecordingTransport()
    client = _exchanger(idp, grant, transport=transport)
    token = client.get_token()
    renewed = client.get_token(stale=token)
    assert renewed.access_token != token.access_token and renewed.scope == "api:read"
    sent = [jwt.decode(f["assertion"], options={"verify_signature": False}) for f in transport.forms]
    assert [c["sub"] for c in sent] == ["workload-9", "workload-9"] and sent[0]["jti"] != sent[1]["jti"]


def test_jwt_bearer_replayed_or_untrusted_assertions_are_refused(idp: LocalIdP) -> None:
    fixed = _bearer_assertion(idp)
    assert _exchanger(idp, JWTBearerGrant(fixed)).get_token()
    with pytest.raises(InvalidGrant):  # a second client (another process) replays the same jti
        _exchanger(idp, JWTBearerGrant(fixed)).get_token()
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidGrant):
        _exchanger(idp, JWTBearerGrant(_bearer_assertion(idp, key=stranger))).get_token()


# -- the async client -----------------------------------------------------------------------------------------------


def test_async_client_private_key_jwt_and_token_exchange(idp: LocalIdP) -> None:
    subject = _subject_token(idp)

    async def main() -> tuple[Any, Any, Any]:
        async with (
            AsyncTokenClient.from_issuer(
                idp.issuer, PKJWT_EC.client_id, private_key=idp.private_key_pem(PKJWT_EC.client_id), scope="api:read"
            ) as cc,
            AsyncTokenClient.from_issuer(
                idp.issuer, PKJWT_RSA.client_id, auth=_auth(idp, "rsa-pem"), grant=TokenExchangeGrant(subject)
            ) as exchanger,
        ):
            results = await asyncio.gather(*(exchanger.get_token() for _ in range(20)))
            assert len({t.access_token for t in results}) == 1 and exchanger.stats.token_requests == 1
            return await cc.get_token(), results[0], await exchanger.exchange_token(subject)

    token, exchanged, one_shot = asyncio.run(main())
    assert token.scope == "api:read"
    assert exchanged.issued_token_type == one_shot.issued_token_type == ACCESS_TOKEN_TYPE


# -- secrets never leak (C10) ---------------------------------------------------------------------------------------


def test_no_assertion_key_or_subject_token_leaks(
    idp: LocalIdP, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pem = idp.private_key_pem(PKJWT_RSA.client_id)
    subject = _subject_token(idp)
    transport = RecordingTransport()
    store = FileStore(tmp_path)
    auth = PrivateKeyJWT(PKJWT_RSA.client_id, pem)
    client = TokenClient.from_issuer(
        idp.issuer, auth.client_id, auth=auth, grant=TokenExchangeGrant(subject), store=store, transport=transport
    )
    token = client.get_token()
    revoke(client, token.access_token, token_type_hint="access_token")
    errors: list[BaseException] = []
    run = uuid.uuid4()
    replaying = PrivateKeyJWT(PKJWT_RSA.client_id, pem, new_jti=lambda: f"replayed-{run}")
    failing = TokenClient.from_issuer(idp.issuer, auth.client_id, auth=replaying, transport=transport, store=store)
    for _ in range(2):
        try:
            failing.fetch_client_credentials()
        except InvalidClient as error:
            errors.append(error)
    assert len(errors) == 1
    secrets_sent = [*transport.assertions(), subject]
    key_lines = [line for line in pem.decode().splitlines() if "PRIVATE KEY" not in line]
    assert len(secrets_sent) == 5 and key_lines
    shown = [
        *(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records),
        repr(client),
        repr(failing),
        repr(auth),
        repr(client.grant),
        repr(token),
        str(errors[0]),
        repr(errors[0]),
        *(p.read_bytes().decode() for p in tmp_path.rglob("*") if p.is_file()),
    ]
    assert caplog.records and any(p.is_file() for p in tmp_path.rglob("*"))
    for text in shown:
        for secret in [*secrets_sent, *key_lines]:
            assert secret not in text
        for secret in secrets_sent:
            assert secret.split(".")[1 if secret.count(".") == 2 else 0][:20] not in text
