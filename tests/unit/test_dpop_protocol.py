"""DPoP proofs (RFC 9449 §4), thumbprints (RFC 7638), nonce challenges (§8, §9) and the token-endpoint flow
wrapper, without a server; protected resource metadata (RFC 9728) parsing and URLs."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Generator
from typing import Any

import jwt
import pytest

from tokensmith import DPoPError, DPoPKey, MemoryStore, ResourceMetadataError, Token
from tokensmith._flow import Get, Post
from tokensmith._protocol import dpop as proto
from tokensmith._protocol.messages import HttpRequest, HttpResponse
from tokensmith._protocol.resource_metadata import (
    challenge_metadata_url,
    check_metadata_location,
    metadata_url,
    parse_resource_metadata,
    same_resource,
)
from tokensmith.dpop import DPoPSession


def _verify(proof: str, key: DPoPKey) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(proof, jwt.PyJWK(key.public_jwk, key.alg).key, algorithms=[key.alg])
    return claims


# --- proofs ------------------------------------------------------------------------------------------------


def test_proof_header_has_typ_alg_and_only_the_public_jwk() -> None:
    """RFC 9449 §4.2: typ dpop+jwt, an asymmetric alg, the public key as jwk (never a private member)."""
    key = DPoPKey.generate()
    header, _ = proto.decode_unverified(key.proof("POST", "https://as.example/token"))
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert header["jwk"] == key.public_jwk and set(header["jwk"]) == {"kty", "crv", "x", "y"}
    private = json.loads(key._private_jwk_json())
    assert "d" in private and private["d"] not in json.dumps(header)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"])
def test_proof_signature_verifies_with_the_embedded_key(alg: str) -> None:
    """RFC 9449 §4.3 step 6: the signature verifies with the jwk in the header (ECDSA in JWS R||S form)."""
    key = DPoPKey.generate(alg)
    proof = key.proof("GET", "https://rs.example/x")
    header, _ = proto.decode_unverified(proof)
    jwt.decode(proof, jwt.PyJWK(header["jwk"], alg).key, algorithms=[alg])


def test_claims_htm_htu_iat_jti() -> None:
    """RFC 9449 §4.2: htm (upper case), htu without query and fragment, iat, jti; no ath and no nonce unless
    asked."""
    key = DPoPKey.generate()
    claims = _verify(key.proof("post", "https://AS.Example:8443/p/token?x=1#frag", iat=1_700_000_000, jti="j1"), key)
    assert claims == {"htm": "POST", "htu": "https://as.example:8443/p/token", "iat": 1_700_000_000, "jti": "j1"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://rs.example/a/b?c=d", "https://rs.example/a/b"),
        ("https://rs.example", "https://rs.example/"),
        ("https://RS.example/Path#x", "https://rs.example/Path"),
        ("https://user:pw@rs.example/p", "https://rs.example/p"),
        ("http://127.0.0.1:8080/protected/items?id=7", "http://127.0.0.1:8080/protected/items"),
        # RFC 3986 §6.2.3 (scheme-based normalisation, which RFC 9449 §4.3 asks servers to apply): a default port
        # is the same URI without it, and a server that rebuilds the URI from its Host header never has it.
        ("https://as.example:443/token", "https://as.example/token"),
        ("HTTP://AS.example:80/token", "http://as.example/token"),
        ("https://as.example:/token", "https://as.example/token"),
        ("http://as.example:443/token", "http://as.example:443/token"),
        ("https://[::1]:443/token", "https://[::1]/token"),
    ],
)
def test_htu_normalisation(url: str, expected: str) -> None:
    """RFC 9449 §4.2: "the HTTP target URI, without query and fragment parts"; scheme and host case-folded."""
    assert proto.htu(url) == expected


def test_ath_is_base64url_sha256_of_the_access_token() -> None:
    """RFC 9449 §4.2 ath, for resource requests only."""
    key = DPoPKey.generate()
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    claims = _verify(key.proof("GET", "https://rs.example/r", access_token=token), key)
    digest = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    assert claims["ath"] == digest
    # RFC 9449 §7.1's example token and ath value.
    assert proto.ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_every_proof_has_a_fresh_jti_and_the_nonce_when_given() -> None:
    """RFC 9449 §4.2 (jti unique per proof, §11.1 replay) and §8 (nonce from the server)."""
    key = DPoPKey.generate()
    jtis = {_verify(key.proof("GET", "https://rs.example/"), key)["jti"] for _ in range(50)}
    assert len(jtis) == 50
    assert _verify(key.proof("GET", "https://rs.example/", nonce="n-1"), key)["nonce"] == "n-1"


def test_rfc7638_thumbprint_example() -> None:
    """RFC 7638 §3.1: the example RSA key's thumbprint."""
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
            "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
            "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
            "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert proto.jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_keys_from_pem_jwk_and_signer_agree() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    from_key, from_pem = DPoPKey(private), DPoPKey.from_pem(pem)
    from_jwk = DPoPKey.from_jwk(from_key._private_jwk_json())
    assert from_key.thumbprint == from_pem.thumbprint == from_jwk.thumbprint
    signer = DPoPKey.from_signer(
        lambda data: jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(data, private),
        from_key.public_jwk,
        "ES256",
    )
    assert signer.thumbprint == from_key.thumbprint and not signer.exportable
    _verify(signer.proof("GET", "https://rs.example/"), from_key)
    with pytest.raises(DPoPError):
        signer._private_jwk_json()


def test_bad_keys_are_typed_errors() -> None:
    with pytest.raises(DPoPError):
        DPoPKey.generate("HS256")
    with pytest.raises(DPoPError):
        DPoPKey.from_jwk({"kty": "oct", "k": "c2VjcmV0", "d": "x"})
    with pytest.raises(DPoPError):
        DPoPKey.from_jwk(DPoPKey.generate().public_jwk)  # no private part
    with pytest.raises(DPoPError):
        DPoPKey.from_pem("not a pem")
    with pytest.raises(ValueError, match="asymmetric"):
        proto.build_proof(lambda b: b"", "HS256", {"kty": "oct"}, "GET", "https://x/", iat=1, jti="j")


def test_short_rsa_keys_are_refused_and_a_pem_password_may_be_text() -> None:
    """RFC 7518 §3.3: RS/PS keys of 2048 bits or more only. An encrypted PEM's password may be a str (UTF-8), as
    PrivateKeyJWT takes it; a wrong one is a typed error that shows neither the key nor the password."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    with pytest.raises(DPoPError, match="1024-bit RSA key is too short"):
        DPoPKey(rsa.generate_private_key(public_exponent=65537, key_size=1024), "RS256")
    assert DPoPKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), "PS256").alg == "PS256"

    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption("pässword".encode()),
    )
    assert DPoPKey.from_pem(pem, "pässword").thumbprint == DPoPKey(private).thumbprint
    with pytest.raises(DPoPError, match="not a usable PEM private key") as wrong:
        DPoPKey.from_pem(pem, "wrong-pässword")
    assert "pässword" not in str(wrong.value)


def test_key_repr_shows_no_private_part() -> None:
    key = DPoPKey.generate()
    d = json.loads(key._private_jwk_json())["d"]
    assert d not in repr(key) and key.thumbprint in repr(key)


# --- nonce challenges ----------------------------------------------------------------------------------------


def _response(status: int, body: object = None, **headers: str) -> HttpResponse:
    data = json.dumps(body).encode() if body is not None else b""
    return HttpResponse(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, data)


def test_token_endpoint_nonce_challenge_needs_400_error_and_header() -> None:
    """RFC 9449 §8: 400, error=use_dpop_nonce, and a DPoP-Nonce header; anything less is not a challenge."""
    assert proto.is_token_nonce_challenge(_response(400, {"error": "use_dpop_nonce"}, dpop_nonce="abc"))
    assert not proto.is_token_nonce_challenge(_response(400, {"error": "use_dpop_nonce"}))
    assert not proto.is_token_nonce_challenge(_response(400, {"error": "invalid_grant"}, dpop_nonce="abc"))
    assert not proto.is_token_nonce_challenge(_response(401, {"error": "use_dpop_nonce"}, dpop_nonce="abc"))
    assert not proto.is_token_nonce_challenge(_response(400, {"error": "use_dpop_nonce"}, dpop_nonce="a b"))


def test_resource_nonce_challenge_needs_401_dpop_scheme_and_header() -> None:
    """RFC 9449 §9: 401 with ``WWW-Authenticate: DPoP error="use_dpop_nonce"`` and DPoP-Nonce."""
    challenge = 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"'
    assert proto.is_resource_nonce_challenge(401, challenge, "eyJ7S_zG.eyJH0-Z.HX4w-7v")
    assert proto.is_resource_nonce_challenge(401, 'Bearer realm="x", ' + challenge, "n")
    assert not proto.is_resource_nonce_challenge(401, challenge, None)
    assert not proto.is_resource_nonce_challenge(403, challenge, "n")
    assert not proto.is_resource_nonce_challenge(401, 'Bearer error="use_dpop_nonce"', "n")
    assert proto.is_dpop_invalid_token(401, 'DPoP error="invalid_token"')
    assert not proto.is_dpop_invalid_token(401, 'Bearer error="invalid_token"')


def _drive(flow: Generator[Any, Any, Any], answers: list[HttpResponse]) -> tuple[Any, list[HttpRequest]]:
    """Run a flow by hand, answering its POSTs in order; returns its result and the requests it sent."""
    sent: list[HttpRequest] = []
    value: Any = None
    try:
        while True:
            effect = flow.send(value)
            assert isinstance(effect, Post)
            sent.append(effect.request)
            value = answers.pop(0)
    except StopIteration as stop:
        return stop.value, sent


def _one_post(url: str) -> Generator[Any, Any, HttpResponse]:
    response: HttpResponse = yield Post(HttpRequest(url, [("grant_type", "client_credentials")]))
    return response


TOKEN = "https://as.example/token"


def test_token_flow_signs_token_endpoint_posts_and_retries_a_nonce_challenge_once() -> None:
    """RFC 9449 §8: one retry with the nonce; a second challenge is handed back (no loop); the nonce of any
    response is remembered for that server (§8.1) and used in the next proof."""
    session = DPoPSession(DPoPKey.generate(), generated=False)
    challenge = _response(400, {"error": "use_dpop_nonce"}, dpop_nonce="n1")
    ok = _response(200, {"access_token": "a", "token_type": "DPoP"}, dpop_nonce="n2")
    result, sent = _drive(session.token_flow(_one_post(TOKEN), lambda u: u == TOKEN), [challenge, ok])
    assert result is ok and len(sent) == 2
    first, second = (proto.decode_unverified(r.headers["DPoP"])[1] for r in sent)
    assert "nonce" not in first and second["nonce"] == "n1" and first["jti"] != second["jti"]
    assert first["htm"] == "POST" and first["htu"] == TOKEN and "ath" not in first
    assert session.nonce_for(TOKEN) == "n2"

    again = _response(400, {"error": "use_dpop_nonce"}, dpop_nonce="n3")
    result, sent = _drive(session.token_flow(_one_post(TOKEN), lambda u: u == TOKEN), [again, again])
    assert result is again and len(sent) == 2  # one retry, then the server's answer goes to the grant flow
    assert proto.decode_unverified(sent[0].headers["DPoP"])[1]["nonce"] == "n2"


def test_token_flow_leaves_other_requests_alone() -> None:
    session = DPoPSession(DPoPKey.generate(), generated=False)
    _, sent = _drive(session.token_flow(_one_post("https://as.example/device"), lambda u: u == TOKEN), [_response(200)])
    assert "DPoP" not in sent[0].headers


def test_token_flow_passes_other_effects_and_failures_through() -> None:
    session = DPoPSession(DPoPKey.generate(), generated=False)

    def inner() -> Generator[Any, Any, str]:
        try:
            yield Get("https://as.example/.well-known/x")
        except KeyError:
            return "caught"
        return "not caught"

    flow = session.token_flow(inner(), lambda u: u == TOKEN)
    assert isinstance(next(flow), Get)
    with pytest.raises(StopIteration) as stop:
        flow.throw(KeyError("x"))
    assert stop.value.value == "caught"


# --- the token and the store ---------------------------------------------------------------------------------


def test_token_records_jkt_and_uses_the_dpop_scheme() -> None:
    """RFC 9449 §7.1: ``Authorization: DPoP <token>``; jkt persisted by to_dict/from_dict (only when set, so
    Bearer token files are unchanged)."""
    token = Token("abc", token_type="DPoP", jkt="thumb")
    assert token.authorization == "DPoP abc" and token.is_dpop
    assert Token.from_dict(token.to_dict()) == token
    assert "jkt" not in Token("abc").to_dict() and Token("abc", token_type="dpop").is_dpop


def test_memory_store_keeps_keys_apart_from_tokens() -> None:
    store = MemoryStore()
    store.save("k", Token("abc", token_type="DPoP", jkt="t"))
    store.save_key("k", '{"kty":"EC"}')
    assert store.load_key("k") == '{"kty":"EC"}'
    assert store.delete("k") and store.load_key("k") is not None  # deleting the token keeps the key
    assert store.delete_key("k") and store.load_key("k") is None and not store.delete_key("k")


# --- RFC 9728 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("https://rs.example", "https://rs.example/.well-known/oauth-protected-resource"),
        ("https://rs.example/", "https://rs.example/.well-known/oauth-protected-resource"),
        ("https://rs.example/resource1", "https://rs.example/.well-known/oauth-protected-resource/resource1"),
        ("https://rs.example:8443/a/b/", "https://rs.example:8443/.well-known/oauth-protected-resource/a/b"),
    ],
)
def test_metadata_url_inserts_the_well_known_segment(resource: str, expected: str) -> None:
    """RFC 9728 §3.1 (and its example): inserted between host and path, a terminating slash removed."""
    assert metadata_url(resource) == expected


def test_metadata_url_refuses_a_fragment() -> None:
    with pytest.raises(ResourceMetadataError):
        metadata_url("https://rs.example/a#b")


def _doc(**members: Any) -> HttpResponse:
    body = {"resource": "https://rs.example/api", "authorization_servers": ["https://as.example"], **members}
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


def test_parse_metadata_accepts_the_matching_resource() -> None:
    meta = parse_resource_metadata(
        _doc(scopes_supported=["a", "b"], dpop_bound_access_tokens_required=True), "https://RS.example/api"
    )
    assert meta.authorization_servers == ("https://as.example",) and meta.dpop_bound_access_tokens_required
    assert meta.scopes_supported == ("a", "b")


@pytest.mark.parametrize(
    "doc",
    [
        _doc(resource="https://rs.example/other"),
        _doc(resource="https://rs.example/api/"),
        _doc(resource=None),
        _doc(authorization_servers=[]),
        _doc(authorization_servers=["http://as.example"]),  # plain http, not loopback
        _doc(dpop_bound_access_tokens_required="yes"),
        _doc(scopes_supported="a b"),
    ],
)
def test_parse_metadata_refuses(doc: HttpResponse) -> None:
    """RFC 9728 §3.3: a different resource means the document is not used; malformed members are errors."""
    with pytest.raises(ResourceMetadataError):
        parse_resource_metadata(doc, "https://rs.example/api")


def test_same_resource_is_strict() -> None:
    assert same_resource("https://rs.example", "https://RS.EXAMPLE/")
    assert not same_resource("https://rs.example/a", "https://rs.example/a/")
    assert not same_resource("https://rs.example/a", "http://rs.example/a")
    assert not same_resource("https://rs.example:444/a", "https://rs.example/a")


def test_challenge_metadata_url_and_origin_check() -> None:
    """RFC 9728 §5.1 (resource_metadata in a Bearer or DPoP challenge); §7.7: same origin only."""
    url = "https://rs.example/.well-known/oauth-protected-resource/api"
    assert challenge_metadata_url(f'Bearer resource_metadata="{url}"') == url
    assert challenge_metadata_url(f'Basic realm="x", DPoP algs="ES256", resource_metadata="{url}"') == url
    assert challenge_metadata_url('Bearer error="invalid_token"') is None
    assert check_metadata_location(url, "https://rs.example:443/api") == url
    with pytest.raises(ResourceMetadataError, match="origin"):
        check_metadata_location("https://evil.example/.well-known/oauth-protected-resource", "https://rs.example/api")
    with pytest.raises(ResourceMetadataError, match="refused"):
        check_metadata_location("http://rs.example/.well-known/oauth-protected-resource", "http://rs.example/api")


def test_a_key_signs_only_with_its_curve() -> None:
    """RFC 7518 §3.4: ES256 is P-256, ES384 P-384; a mismatched pairing would produce proofs no server accepts."""
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(DPoPError, match="cannot sign"):
        DPoPKey(ec.generate_private_key(ec.SECP384R1()), "ES256")
    assert DPoPKey(ec.generate_private_key(ec.SECP384R1())).alg == "ES384"


def test_dpop_headers_without_io() -> None:
    """The public helper: a DPoP token gets ``Authorization: DPoP`` and a proof with ath and the origin's nonce;
    a Bearer token gets its Bearer header only; a client without DPoP, or before any key, says so."""
    from tokensmith import TokenClient

    key = DPoPKey.generate()
    client = TokenClient("https://as.example/token", "c", "s", dpop=key)
    token = Token("at-1", token_type="DPoP", jkt=key.thumbprint)
    client.update_dpop_nonce("https://rs.example/a", "n-7")
    client.update_dpop_nonce("https://rs.example/b", "bad nonce")  # not NQCHAR: ignored (RFC 9449 §8.1)
    headers = client.dpop_headers("GET", "https://rs.example/items?x=1", token)
    assert headers["Authorization"] == "DPoP at-1"
    claims = _verify(headers["DPoP"], key)
    assert (
        claims["ath"] == proto.ath("at-1") and claims["nonce"] == "n-7" and claims["htu"] == "https://rs.example/items"
    )
    assert client.dpop_headers("GET", "https://other.example/", None).keys() == {"DPoP"}
    assert client.dpop_headers("GET", "https://rs.example/", Token("at-2")) == {"Authorization": "Bearer at-2"}
    with pytest.raises(DPoPError, match="does not use DPoP"):
        TokenClient("https://as.example/token", "c", "s").dpop_headers("GET", "https://rs.example/", token)
    with pytest.raises(DPoPError, match="get_token"):
        TokenClient("https://as.example/token", "c", "s", dpop=True).dpop_headers("GET", "https://rs.example/")
    with pytest.raises(TypeError):
        TokenClient("https://as.example/token", "c", "s", dpop="yes")  # type: ignore[arg-type]


def test_a_default_port_is_the_same_origin_for_nonces() -> None:
    """RFC 6454 §4: an origin's default port is implied; a nonce given by https://as.example:443 is for
    https://as.example too (and never for another port)."""
    assert proto.origin("https://AS.example:443/token") == proto.origin("https://as.example/x") == "https://as.example"
    assert proto.origin("https://as.example:8443/") != proto.origin("https://as.example/")


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (DPoPKey.from_jwk, '{"kty":"EC","crv":"P-256","d":"private-part-of-the-key",'),
        (DPoPKey.from_pem, "-----BEGIN PRIVATE KEY-----\nprivate-part-of-the-key\u00e9\n"),
    ],
)
def test_malformed_key_text_is_a_dpop_error_that_holds_none_of_it(make: Any, text: str) -> None:
    """A private JWK that is not JSON, a PEM that is not ASCII: a DPoPError (typed, like every other unusable key),
    and neither it nor its cause keeps the text (json's JSONDecodeError.doc and UnicodeEncodeError.object do: a
    crash reporter that records exception attributes would send the private key away)."""
    with pytest.raises(DPoPError) as raised:
        make(text)
    error = raised.value
    assert error.__cause__ is None and error.__suppress_context__
    assert "private-part" not in str(error) and "private-part" not in repr(vars(error))
