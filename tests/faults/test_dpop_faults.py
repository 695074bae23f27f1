"""DPoP (RFC 9449) against the fault server: what the real IdP will not do. A DPoP token we did not ask for, a
Bearer token although we sent a proof, a nonce challenge that persists, nonces from successful responses, and
a proof on every token request of every grant (refresh, device polling); a store without a key slot."""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import requests

from cli_harness import Cli, plant
from fault_server import FaultServer, Reply
from tokensmith import (
    ClientSecretBasic,
    DPoPError,
    DPoPKey,
    FileStore,
    InvalidDPoPProof,
    MemoryStore,
    NoClientAuth,
    SigningError,
    Token,
    TokenClient,
    Transport,
    UnexpectedTokenType,
    UseDPoPNonce,
)
from tokensmith._protocol.messages import HttpRequest, HttpResponse


def decode_unverified(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A proof's header and claims, unverified (the resource tests verify signatures for real)."""
    header, claims, _ = proof.split(".")
    return tuple(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in (header, claims))  # type: ignore[return-value]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _client(server: FaultServer, **kwargs: object) -> TokenClient:
    kwargs.setdefault("auth", ClientSecretBasic("svc", "svc-secret"))
    return TokenClient(server.url("/token"), session=requests.Session(), background_refresh=False, **kwargs)  # type: ignore[arg-type]


def _proof_claims(server: FaultServer, path: str = "/token") -> list[dict[str, object]]:
    return [decode_unverified(r.headers["dpop"])[1] for r in server.recorded(path)]


def test_a_dpop_token_we_did_not_ask_for_is_refused(fault_server: FaultServer) -> None:
    """RFC 9449 §5 / C7: no proof was sent, so a token_type=DPoP answer is unusable: a typed error, nothing
    stored, nothing ever sent as a Bearer token."""
    fault_server.script("/token", Reply(json={"access_token": "at-1", "token_type": "DPoP", "expires_in": 60}))
    store = MemoryStore()
    client = _client(fault_server, store=store)
    with pytest.raises(UnexpectedTokenType, match="no DPoP proof was sent"):
        client.get_token()
    assert "dpop" not in fault_server.recorded("/token")[0].headers
    assert store.load(client.cache_key) is None


def test_dpop_in_accepted_token_types_without_a_key_is_still_refused(fault_server: FaultServer) -> None:
    fault_server.script("/token", Reply(json={"access_token": "at-1", "token_type": "DPoP", "expires_in": 60}))
    client = _client(fault_server, accepted_token_types=("bearer", "DPoP"))
    with pytest.raises(UnexpectedTokenType):
        client.get_token()


def test_a_bearer_token_despite_the_proof_is_used_as_bearer(fault_server: FaultServer) -> None:
    """RFC 9449 §5: the server may issue a Bearer token to a client that sent a proof; it is then used as one."""
    fault_server.script("/token", Reply(json={"access_token": "at-1", "token_type": "Bearer", "expires_in": 60}))
    key = DPoPKey.generate()
    token = _client(fault_server, dpop=key).get_token()
    assert token.authorization == "Bearer at-1" and not token.is_dpop and token.jkt == key.thumbprint
    claims = _proof_claims(fault_server)[0]
    assert claims["htm"] == "POST" and claims["htu"] == fault_server.url("/token")


def test_a_persistent_nonce_challenge_is_retried_once_then_raised(fault_server: FaultServer) -> None:
    """RFC 9449 §8: one retry with the new nonce; the second challenge is the server's answer (UseDPoPNonce)."""
    challenge = Reply(status=400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": "n1"})
    fault_server.script(
        "/token", challenge, Reply(status=400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": "n2"})
    )
    client = _client(fault_server, dpop=True, retry=None)
    with pytest.raises(UseDPoPNonce):
        client.get_token()
    assert fault_server.count("/token") == 2 == client.stats.token_requests  # the retry is counted too
    assert [c.get("nonce") for c in _proof_claims(fault_server)] == [None, "n1"]


def test_a_nonce_from_a_successful_answer_is_used_next_time(fault_server: FaultServer) -> None:
    """RFC 9449 §8.1/§8.2: the server may supply a new nonce on any response; the next proof carries it."""
    body = {"access_token": "at-1", "token_type": "DPoP", "expires_in": 60}
    fault_server.script(
        "/token", Reply(json=body, headers={"DPoP-Nonce": "fresh-1"}), Reply(json={**body, "access_token": "at-2"})
    )
    client = _client(fault_server, dpop=True)
    client.get_token()
    client.fetch_client_credentials()
    assert [c.get("nonce") for c in _proof_claims(fault_server)] == [None, "fresh-1"]


def test_refresh_and_device_polling_carry_a_fresh_proof_each(fault_server: FaultServer) -> None:
    """Every token request of every grant (RFC 9449 §5: refresh §5, device code polls): a new jti each time."""
    clock = Clock()
    key = DPoPKey.generate()
    fault_server.script(
        "/device",
        Reply(json={"device_code": "dc", "user_code": "UC", "verification_uri": "https://v", "expires_in": 600}),
    )
    body = {"access_token": "at-1", "token_type": "DPoP", "expires_in": 60, "refresh_token": "rt-1"}
    fault_server.script(
        "/token",
        Reply(status=400, json={"error": "authorization_pending"}),
        Reply(json=body),
        Reply(json={**body, "access_token": "at-2", "refresh_token": "rt-2"}),
    )
    client = TokenClient(
        fault_server.url("/token"),
        auth=NoClientAuth("public"),
        device_authorization_endpoint=fault_server.url("/device"),
        grant="device_code",
        scope="openid",
        dpop=key,
        session=requests.Session(),
        on_prompt=lambda prompt: None,
        clock=clock,
        monotonic=clock,
        sleep=clock.sleep,
        background_refresh=False,
    )
    token = client.login()
    renewed = client.refresh()
    assert token.is_dpop and renewed.jkt == key.thumbprint
    assert "dpop" not in fault_server.recorded("/device")[0].headers  # only the token endpoint
    claims = _proof_claims(fault_server)
    assert len(claims) == 3 and len({c["jti"] for c in claims}) == 3
    assert client.stats.token_requests == 3  # two device polls and the refresh: every token request counts
    assert all(c["htu"] == fault_server.url("/token") and c["htm"] == "POST" and "ath" not in c for c in claims)
    assert [f for f in fault_server.recorded("/token")[2].form if f[0] == "grant_type"] == [
        ("grant_type", "refresh_token")
    ]


class NoKeySlotStore:
    """A custom store from before DPoP: no load_key/save_key/delete_key."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}

    def load(self, key: str) -> Token | None:
        return self.tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        self.tokens[key] = token

    def delete(self, key: str, *, refresh_token: str | None = None) -> bool:
        return self.tokens.pop(key, None) is not None

    def lock(self, key: str) -> AbstractContextManager[object]:
        return nullcontext()


@pytest.fixture
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_a_store_without_a_key_slot_keeps_the_key_in_memory_and_warns_once(
    fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"access_token": "at-1", "token_type": "DPoP", "expires_in": 60}
    fault_server.script("/token", Reply(json=body), Reply(json={**body, "access_token": "at-2"}))
    store = NoKeySlotStore()
    client = _client(fault_server, dpop=True, store=store)
    with caplog.at_level(logging.WARNING, "tokensmith"), pytest.warns(RuntimeWarning, match="no DPoP key slot"):
        first = client.get_token()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = client.fetch_client_credentials()
    assert first.jkt == second.jkt is not None
    assert sum("no DPoP key slot" in r.getMessage() for r in caplog.records) == 1
    # A new process (a new client) with that store cannot use the stored DPoP token: its key is gone.
    other = _client(fault_server, dpop=True, store=store)
    fault_server.script("/token", Reply(json={**body, "access_token": "at-3"}))
    assert other.get_token().access_token == "at-3"


def test_a_made_key_uses_an_algorithm_the_server_lists(fault_server: FaultServer) -> None:
    """RFC 9449 §5.1: the server's dpop_signing_alg_values_supported; without ES256 there, the first listed that
    tokensmith can sign with (RS256 is skipped: the list is the server's order, unknown names are ignored)."""
    issuer = fault_server.base_url
    fault_server.script(
        "/.well-known/openid-configuration",
        Reply(
            json={
                "issuer": issuer,
                "token_endpoint": fault_server.url("/token"),
                "dpop_signing_alg_values_supported": ["HS256", "EdDSA", "RS256"],
            }
        ),
    )
    fault_server.script("/token", Reply(json={"access_token": "at-1", "token_type": "DPoP", "expires_in": 60}))
    client = TokenClient.from_issuer(issuer, "svc", "svc-secret", dpop=True, session=requests.Session())
    token = client.get_token()
    header, _ = decode_unverified(fault_server.recorded("/token")[0].headers["dpop"])
    assert header["alg"] == "EdDSA" and header["jwk"]["crv"] == "Ed25519" and token.jkt is not None


def test_cli_logout_removes_the_dpop_key_too(tmp_path: Path, fault_server: FaultServer) -> None:
    """A logout forgets the identity: the token file and the DPoP key's own file (``<key>.dpop``) both go."""
    cli = Cli(tmp_path / "sandbox")
    key = TokenClient(fault_server.url("/token"), "cli").cache_key
    plant(cli.tokens, key, "planted-access-token", token_type="DPoP", jkt="thumb")
    store = FileStore(cli.tokens)
    store.save_key(key, '{"kty":"EC","crv":"P-256","x":"x","y":"y","d":"d"}')
    proc = cli.run("logout", "--token-endpoint", fault_server.url("/token"), "--client-id", "cli", "--no-revoke")
    assert proc.returncode == 0, proc.stderr
    assert not cli.token_file(key).exists() and store.load_key(key) is None
    assert fault_server.count() == 0


class EchoingTransport(Transport):
    """A token endpoint that pastes the proof it got into its error_description (some do, "for debugging")."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def post(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request.headers["DPoP"])
        body = {"error": "invalid_dpop_proof", "error_description": f"bad proof {request.headers['DPoP']}"}
        return HttpResponse(400, {"content-type": "application/json"}, json.dumps(body).encode())


def test_an_echoed_proof_is_scrubbed_from_the_error(caplog: pytest.LogCaptureFixture) -> None:
    """C10 for proofs: the proof joins the request's secrets, so the server's echo of it reaches neither the
    exception (InvalidDPoPProof, RFC 9449 §7.1's error code) nor the log."""
    caplog.set_level(logging.DEBUG)
    transport = EchoingTransport()
    client = TokenClient("https://as.example/token", "svc", "svc-secret", dpop=True, transport=transport)
    with pytest.raises(InvalidDPoPProof) as raised:
        client.get_token()
    (sent,) = transport.sent
    assert "bad proof" in str(raised.value) and sent not in str(raised.value) and sent not in caplog.text


def test_a_dpop_client_never_takes_a_bearer_token_another_client_stored(fault_server: FaultServer) -> None:
    """RFC 9449 §5, C7: a DPoP-bound token and a Bearer one are different tokens, so a client with DPoP and one
    without (the command line) keep them under different cache keys in a shared store: neither replaces the
    other's (no ping-pong of requests, no login lost). And a Bearer token found under a DPoP client's own key
    (written by hand, or by an older release) is never sent as Bearer: the client fetches its own bound token."""
    body = {"access_token": "at-dpop-1", "token_type": "DPoP", "expires_in": 600}
    fault_server.script(
        "/token",
        Reply(json=body),
        Reply(json={"access_token": "at-bearer", "token_type": "Bearer", "expires_in": 600}),
        Reply(json={**body, "access_token": "at-dpop-2"}),
    )
    store = MemoryStore()
    key = DPoPKey.generate()
    bound = _client(fault_server, store=store, dpop=key)
    assert bound.get_token().authorization == "DPoP at-dpop-1"
    plain = _client(fault_server, store=store)
    assert plain.cache_key != bound.cache_key
    assert plain.get_token().authorization == "Bearer at-bearer"
    # Each finds its own token in the store: no request, no replacement.
    assert _client(fault_server, store=store, dpop=key).get_token().authorization == "DPoP at-dpop-1"
    assert _client(fault_server, store=store).get_token().authorization == "Bearer at-bearer"
    assert fault_server.count("/token") == 2
    # A Bearer token under the DPoP client's own key is set aside, not sent: a bound token is fetched instead.
    store.save(bound.cache_key, Token(access_token="at-planted", token_type="Bearer", expires_at=time.time() + 600))
    token = _client(fault_server, store=store, dpop=key).get_token()
    assert token.authorization == "DPoP at-dpop-2" and token.jkt == key.thumbprint
    assert "dpop" in fault_server.recorded("/token")[-1].headers


def test_a_failing_dpop_signer_is_a_typed_error_that_shows_none_of_its_message(fault_server: FaultServer) -> None:
    """A DPoPKey.from_signer whose HSM or KMS raises: SigningError (transient) with the exception type only, and
    no request without a proof."""
    real = DPoPKey.generate()

    def kms(data: bytes) -> bytes:
        raise PermissionError("denied for key projects/p/keys/kms-secret-key-id")

    client = _client(fault_server, dpop=DPoPKey.from_signer(kms, real.public_jwk, "ES256"), retry=None)
    with pytest.raises(SigningError, match="PermissionError") as raised:
        client.get_token()
    assert raised.value.transient and "kms-secret-key-id" not in str(raised.value)
    assert fault_server.count("/token") == 0


@pytest.fixture
def other_origin() -> Iterator[FaultServer]:
    """A second server: another port, so another origin (RFC 6454) than ``fault_server``."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


def _redirecting(fault_server: FaultServer, other: FaultServer) -> TokenClient:
    fault_server.default("/token", Reply(json={"access_token": "at-1", "token_type": "DPoP", "expires_in": 600}))
    fault_server.default("/api", Reply(status=302, headers={"Location": other.url("/api")}))
    other.script(
        "/api",
        Reply(status=401, headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": "nonce-of-B"}),
    )
    other.default("/api", Reply(json={}))
    return _client(fault_server, dpop=True)


def test_httpx_never_sends_a_nonce_of_the_origin_it_was_redirected_to(
    fault_server: FaultServer, other_origin: FaultServer
) -> None:
    """RFC 9449 §8.1/§9: a nonce belongs to the server that gave it. After a redirect to another origin, httpx
    hands the auth flow that origin's answer: its nonce is not the first origin's, and its use_dpop_nonce
    challenge is not answered by re-signing for the first origin."""
    import httpx

    from tokensmith.integrations.httpx_auth import TokenAuth as HttpxTokenAuth

    client = _redirecting(fault_server, other_origin)
    with httpx.Client(auth=HttpxTokenAuth(client), follow_redirects=True) as http:
        assert http.get(fault_server.url("/api")).status_code == 401
        http.get(fault_server.url("/api"))
    assert fault_server.count("/api") == 2  # no retry of the first request
    nonces = [decode_unverified(r.headers["dpop"])[1].get("nonce") for r in fault_server.recorded("/api")]
    assert nonces == [None, None]
    headers = client.dpop_headers("GET", other_origin.url("/api"))
    assert decode_unverified(headers["DPoP"])[1].get("nonce") == "nonce-of-B"  # kept for its own origin


def test_requests_drops_the_proof_on_a_redirect(fault_server: FaultServer, other_origin: FaultServer) -> None:
    """A proof is for one method and URL (RFC 9449 §4.2 htm/htu): requests strips the Authorization header on a
    cross-origin redirect but kept the DPoP header, so the first origin's proof went to the second."""
    from tokensmith.integrations.requests_auth import TokenAuth as RequestsTokenAuth

    client = _redirecting(fault_server, other_origin)
    response = requests.get(fault_server.url("/api"), auth=RequestsTokenAuth(client))
    assert response.status_code == 401
    assert "dpop" in fault_server.recorded("/api")[0].headers
    (seen,) = other_origin.recorded("/api")
    assert "dpop" not in seen.headers and "authorization" not in seen.headers


def test_proofs_take_iat_from_the_clients_clock(fault_server: FaultServer) -> None:
    """RFC 9449 §4.2 iat: "creation timestamp" from the one wall clock the client is given (``clock=``), like every
    expiry it computes; the token endpoint's proofs and dpop_headers()' alike."""
    fault_server.script("/token", Reply(json={"access_token": "at-1", "token_type": "DPoP", "expires_in": 600}))
    client = _client(fault_server, dpop=True, clock=lambda: 1_600_000_000.5)
    token = client.get_token()
    assert _proof_claims(fault_server)[0]["iat"] == 1_600_000_000
    headers = client.dpop_headers("GET", "https://rs.example/api", token)
    assert decode_unverified(headers["DPoP"])[1]["iat"] == 1_600_000_000


def test_exchange_token_of_a_dpop_client_carries_a_proof(fault_server: FaultServer) -> None:
    """RFC 9449 §5 for RFC 8693: a DPoP client's one-shot exchange_token() is a token request like any other: a
    proof (with the nonce retry), and the DPoP token it gets is bound to this client's key. It went without a
    proof, so the server issued a Bearer token (or refused a client it requires DPoP of)."""
    body = {"access_token": "at-x", "token_type": "DPoP", "expires_in": 60, "issued_token_type": "urn:x"}
    fault_server.script(
        "/token",
        Reply(status=400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": "n1"}),
        Reply(json=body),
    )
    client = _client(fault_server, dpop=True)
    token = client.exchange_token("subject-token-0123456789")
    claims = _proof_claims(fault_server)
    assert [c.get("nonce") for c in claims] == [None, "n1"] and claims[0]["htu"] == fault_server.url("/token")
    assert token.is_dpop and token.jkt is not None
    header, _ = decode_unverified(fault_server.recorded("/token")[0].headers["dpop"])
    assert token.jkt == DPoPKey.from_jwk(client.store.load_key(client.cache_key)).thumbprint  # type: ignore[attr-defined]
    assert header["jwk"] == DPoPKey.from_jwk(client.store.load_key(client.cache_key)).public_jwk  # type: ignore[attr-defined]


def test_htu_is_the_uri_the_request_went_to_even_with_non_ascii_in_it(fault_server: FaultServer) -> None:
    """RFC 9449 §4.2/§4.3 step 9: the server compares ``htu`` with the URI of the request it received. A token
    endpoint with a non-ASCII path went out percent-encoded (``/t%C3%B6ken``) while the proof said ``/töken``
    (an IRI), so a server that checks ``htu`` refused every proof; an internationalised host likewise went out
    in its A-label form (``xn--...``) but stood in ``htu`` (and keyed the nonces) as typed."""
    import httpx

    encoded = "/t%C3%B6ken"
    fault_server.default(encoded, Reply(json={"access_token": "at-1", "token_type": "DPoP", "expires_in": 600}))
    auth = ClientSecretBasic("svc", "svc-secret")
    client = TokenClient(fault_server.url("/töken"), auth=auth, session=requests.Session(), dpop=True)  # as typed
    token = client.get_token()
    (sent,) = fault_server.recorded(encoded)
    assert _proof_claims(fault_server, encoded)[0]["htu"] == fault_server.base_url + sent.path

    url = "https://Bücher.example/straße/ä b?q=ü"
    on_the_wire = {requests.Request("GET", url).prepare().url, str(httpx.URL(url))}
    assert on_the_wire == {"https://xn--bcher-kva.example/stra%C3%9Fe/%C3%A4%20b?q=%C3%BC"}
    claims = decode_unverified(client.dpop_headers("GET", url, token)["DPoP"])[1]
    assert claims["htu"] == "https://xn--bcher-kva.example/stra%C3%9Fe/%C3%A4%20b"
    client.update_dpop_nonce("https://xn--bcher-kva.example/other", "nonce-1")  # the origin a response came from
    assert decode_unverified(client.dpop_headers("GET", url, token)["DPoP"])[1]["nonce"] == "nonce-1"


@pytest.mark.parametrize("slot", [b"[" * 100_000, b"{", b'{"kty": "EC"}', b"\xff\xfe"])
def test_a_corrupted_key_slot_never_sends_the_bound_token_and_raises_nothing_untyped(
    fault_server: FaultServer, tmp_path: Path, slot: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 9449 §5: a token bound to a key this process cannot load is set aside (its refresh token is never
    sent: it would be refused). A key file of deeply nested JSON (a truncated or overwritten file, another
    program's data) made ``get_token()`` raise a bare ``RecursionError`` out of the JSON decoder instead."""
    clock = Clock()
    fault_server.default(
        "/token", Reply(json={"access_token": "at-1", "token_type": "DPoP", "expires_in": 60, "refresh_token": "rt-1"})
    )
    first = _client(fault_server, dpop=True, store=FileStore(tmp_path), clock=clock)
    bound = first.get_token()
    (key_file,) = tmp_path.glob("*.dpop")
    key_file.write_bytes(slot)
    clock.sleep(3600)
    second = _client(fault_server, dpop=True, store=FileStore(tmp_path), clock=clock)
    caplog.set_level(logging.DEBUG, logger="tokensmith")
    token = second.get_token()
    assert token.jkt is not None and token.jkt != bound.jkt
    said = [r.levelno for r in caplog.records if "DPoP key" in r.getMessage() and "unreadable" in r.getMessage()]
    assert said[0] == logging.WARNING and logging.WARNING not in said[1:]  # said once, though read more than once
    grants = [dict(r.form)["grant_type"] for r in fault_server.recorded("/token")]
    assert grants == ["client_credentials", "client_credentials"]  # a new token for a new key; rt-1 never sent
    with pytest.raises(DPoPError):
        DPoPKey.from_jwk(slot.decode("latin-1"))
