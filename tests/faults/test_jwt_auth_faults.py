"""JWT client authentication where the real IdP will not go: retries after a 503, repeated device polls and
revocation retries each carry a new assertion (a jti is never sent twice, RFC 7523 §3, OIDC Core §9); the method
chosen from the metadata (RFC 8414 §2 ``token_endpoint_auth_methods_supported``); an assertion echoed by the server
is scrubbed (C10, C31)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from fault_server import FaultServer, Reply
from tokensmith import (
    ClientSecretBasic,
    ClientSecretJWT,
    ClientSecretPost,
    InvalidClient,
    JWTBearerGrant,
    PrivateKeyJWT,
    RetryPolicy,
    SigningError,
    TokenClient,
)
from tokensmith._protocol.device import DeviceAuthorization, device_token_request
from tokensmith._transport import Transport
from tokensmith.device import poll_device_token
from tokensmith.revocation import revoke

SECRET = "fault-server-client-secret-0123456789abcdef"
TOKEN = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600}
UNAVAILABLE = Reply(status=503, json={"error": "temporarily_unavailable"})


def _assertions(server: FaultServer, path: str) -> list[dict[str, Any]]:
    claims = []
    for request in server.recorded(path):
        form = dict(request.form)
        assert "authorization" not in request.headers and "client_secret" not in form  # one method (C2)
        claims.append(jwt.decode(form["client_assertion"], SECRET, algorithms=["HS256"], audience=server.url(path)))
    return claims


def _client(server: FaultServer, **kwargs: Any) -> TokenClient:
    kwargs.setdefault("auth", ClientSecretJWT("svc", SECRET))
    return TokenClient(
        server.url("/token"),
        session=requests.Session(),
        retry=RetryPolicy(attempts=3, backoff=0.01),
        sleep=lambda _: None,
        **kwargs,
    )


def test_a_retry_after_503_carries_a_new_assertion(fault_server: FaultServer) -> None:
    """The server may have recorded the first jti before failing: the retry must not replay it."""
    fault_server.script("/token", UNAVAILABLE, UNAVAILABLE, Reply(json=TOKEN))
    assert _client(fault_server).get_token().access_token == "at-1"
    claims = _assertions(fault_server, "/token")
    assert len(claims) == 3 and len({c["jti"] for c in claims}) == 3


def test_every_device_poll_carries_a_new_assertion(fault_server: FaultServer) -> None:
    """RFC 8628 §3.4: a confidential client authenticates on every poll, each with its own jti."""
    pending = Reply(status=400, json={"error": "authorization_pending"})
    fault_server.script("/token", pending, pending, Reply(json={**TOKEN, "refresh_token": "rt-1"}))
    authorization = DeviceAuthorization("device-code-secret", "ABCD", "https://v", 600, 5)
    request = device_token_request(fault_server.url("/token"), ClientSecretJWT("svc", SECRET), "device-code-secret")
    now = [1000.0]

    def sleep(seconds: float) -> bool:
        now[0] += seconds
        return False

    transport = Transport(requests.Session(), timeout=30)  # answers at once; a bound, not a claim
    token = poll_device_token(transport, request, authorization, clock=lambda: now[0], sleep=sleep)
    assert token.refresh_token == "rt-1"
    claims = _assertions(fault_server, "/token")
    assert len(claims) == 3 and len({c["jti"] for c in claims}) == 3
    assert all(dict(r.form)["device_code"] == "device-code-secret" for r in fault_server.recorded("/token"))


def test_a_revocation_retry_carries_a_new_assertion_for_that_endpoint(fault_server: FaultServer) -> None:
    """C29: the revocation endpoint authenticates like the token endpoint; aud = the revocation endpoint."""
    fault_server.script("/revoke", UNAVAILABLE, Reply(status=200, body=b""))
    revoke(
        _client(fault_server), "rt-to-revoke-1", token_type_hint="refresh_token", endpoint=fault_server.url("/revoke")
    )
    claims = _assertions(fault_server, "/revoke")
    assert len(claims) == 2 and claims[0]["jti"] != claims[1]["jti"]


def test_a_callable_assertion_is_asked_again_on_retry(fault_server: FaultServer) -> None:
    """RFC 7523 §2.1 grant: a retried request carries a new assertion from the callable."""
    made: list[str] = []

    def assertion() -> str:
        made.append(f"assertion-{len(made) + 1}.x.y")
        return made[-1]

    fault_server.script("/token", UNAVAILABLE, Reply(json=TOKEN))
    _client(fault_server, auth=ClientSecretBasic("svc", "s"), grant=JWTBearerGrant(assertion)).get_token()
    sent = [dict(r.form)["assertion"] for r in fault_server.recorded("/token")]
    assert sent == made == ["assertion-1.x.y", "assertion-2.x.y"]


def test_an_echoed_assertion_is_scrubbed_from_the_error(fault_server: FaultServer) -> None:
    """C10: the assertion is a secret; a server echoing it in error_description never shows it to the caller."""
    auth = ClientSecretJWT("svc", SECRET, clock=lambda: 1_800_000_000.0, new_jti=lambda: "fixed-jti")
    assertion = auth.assertion(fault_server.url("/token"))  # deterministic: fixed clock and jti, HMAC
    echo = {"error": "invalid_client", "error_description": f"bad client_assertion {assertion}"}
    fault_server.script("/token", Reply(status=401, json=echo))
    with pytest.raises(InvalidClient) as caught:
        _client(fault_server, auth=auth).get_token()
    shown = f"{caught.value} {caught.value!r} {caught.value.error_description}"
    assert assertion not in shown and assertion.split(".")[1] not in shown
    assert dict(fault_server.recorded("/token")[0].form)["client_assertion"] == assertion


# -- the method chosen from the metadata (RFC 8414 §2) ---------------------------------------------------------------


def _discovered(server: FaultServer, methods: list[str] | None, **kwargs: Any) -> tuple[TokenClient, dict[str, str]]:
    issuer = server.url("/")
    metadata: dict[str, Any] = {"issuer": issuer.rstrip("/"), "token_endpoint": server.url("/token")}
    if methods is not None:
        metadata["token_endpoint_auth_methods_supported"] = methods
    server.default("/.well-known/openid-configuration", Reply(json=metadata))
    server.default("/token", Reply(json=TOKEN))
    client = TokenClient(issuer=issuer.rstrip("/"), client_id="svc", session=requests.Session(), **kwargs)
    client.get_token()
    request = server.recorded("/token")[-1]
    return client, {**dict(request.form), **{f"header:{k}": v for k, v in request.headers.items()}}


def test_a_secret_uses_client_secret_jwt_when_only_jwt_methods_are_listed(fault_server: FaultServer) -> None:
    client, sent = _discovered(fault_server, ["private_key_jwt", "client_secret_jwt"], client_secret=SECRET)
    assert isinstance(client.auth, ClientSecretJWT) and "header:authorization" not in sent
    assert jwt.decode(sent["client_assertion"], SECRET, algorithms=["HS256"], audience=fault_server.url("/token"))


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        (None, ClientSecretBasic),  # absent: client_secret_basic (RFC 8414 §2)
        (["client_secret_basic", "client_secret_jwt"], ClientSecretBasic),
        (["client_secret_post", "client_secret_jwt"], ClientSecretPost),
    ],
)
def test_a_secret_keeps_basic_or_post_when_listed(fault_server: FaultServer, methods: Any, expected: type) -> None:
    client, sent = _discovered(fault_server, methods, client_secret=SECRET)
    assert type(client.auth) is expected and "client_assertion" not in sent


def test_a_private_key_uses_private_key_jwt(fault_server: FaultServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    client, sent = _discovered(fault_server, ["client_secret_basic", "private_key_jwt"], private_key=key)
    assert isinstance(client.auth, PrivateKeyJWT) and client.auth is client.auth  # built (and parsed) once
    claims = jwt.decode(
        sent["client_assertion"], key.public_key(), algorithms=["ES256"], audience=fault_server.url("/token")
    )
    assert claims["iss"] == claims["sub"] == "svc"


def test_a_private_key_and_a_secret_follow_the_metadata(fault_server: FaultServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    client, sent = _discovered(fault_server, ["client_secret_basic"], private_key=key, client_secret=SECRET)
    assert isinstance(client.auth, ClientSecretBasic) and "client_assertion" not in sent


def test_audience_issuer_is_filled_in_by_the_client(fault_server: FaultServer) -> None:
    """C31: some servers want the issuer identifier as aud; the client configured with an issuer supplies it."""
    issuer = fault_server.url("/").rstrip("/")
    _, sent = _discovered(fault_server, None, auth=ClientSecretJWT("svc", SECRET, audience="issuer"))
    assert jwt.decode(sent["client_assertion"], SECRET, algorithms=["HS256"], audience=issuer)["aud"] == issuer


class FlakyKMS:
    """A cloud KMS signer: signs with a real key until it fails, with a message naming what it should not."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.failing = False

    def __call__(self, data: bytes) -> bytes:
        if self.failing:
            raise RuntimeError("AccessDenied for arn:aws:kms:key/kms-secret-key-id with session token kms-credential")
        from cryptography.hazmat.primitives import hashes

        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def test_a_failing_signer_is_a_typed_error_that_shows_none_of_its_message(fault_server: FaultServer) -> None:
    """C31 with a KMS: a signer that raises is a SigningError (a TokensmithError, transient: a KMS outage passes)
    naming only the exception type; nothing is sent (there is no assertion to send)."""
    kms = FlakyKMS()
    kms.failing = True
    client = _client(fault_server, auth=PrivateKeyJWT("svc", kms, alg="ES256"))
    with pytest.raises(SigningError) as raised:
        client.get_token()
    assert raised.value.transient and "RuntimeError" in str(raised.value)
    assert "kms-secret-key-id" not in str(raised.value) and "kms-credential" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert fault_server.count("/token") == 0


def test_a_signer_failing_during_renewal_serves_the_still_valid_token(fault_server: FaultServer) -> None:
    """A failure path keeps what it had: a KMS blip while renewing ahead of expiry is transient, so the caller
    gets the still-valid token (it used to get the KMS's own RuntimeError)."""
    clock = [1_700_000_000.0]
    kms = FlakyKMS()
    fault_server.script("/token", Reply(json={**TOKEN, "expires_in": 600}))
    client = _client(
        fault_server, auth=PrivateKeyJWT("svc", kms, alg="ES256"), clock=lambda: clock[0], background_refresh=False
    )
    first = client.get_token()
    kms.failing = True
    assert first.refresh_at is not None and first.expires_at is not None
    assert first.must_refresh_at is not None
    clock[0] = (first.refresh_at + first.must_refresh_at) / 2  # renew-soon, still valid
    assert client.get_token() == first
    assert fault_server.count("/token") == 1
