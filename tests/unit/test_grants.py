"""Issue 11 part 2: the extension grants' requests, their cache keys, and ``Token.issued_token_type`` in the store
(RFC 8693 §2.1/§2.2.1, RFC 7523 §2.1; C3, C30, C31)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from tokensmith import (
    ClientSecretBasic,
    ConfigurationError,
    CredentialSourceError,
    FileStore,
    JWTBearerGrant,
    MemoryStore,
    Token,
    TokenClient,
    TokenExchangeGrant,
)
from tokensmith._protocol.token import token_request
from tokensmith.grants import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE
from tokensmith.stores.codec import decode_token, encode_token

TOKEN_URL = "https://as.example/token"
SUBJECT = "eyJhbGciOi.subject-token-value.sig"


def _form(grant: Any, scope: str | None = None) -> list[tuple[str, str]]:
    request = token_request(
        TOKEN_URL, grant.grant_type, ClientSecretBasic("c", "s"), scope=scope, params=grant.params()
    )
    return request.form


def _client(grant: Any, **kwargs: Any) -> TokenClient:
    return TokenClient(TOKEN_URL, "svc", "secret", grant=grant, **kwargs)


def test_token_exchange_request() -> None:
    """RFC 8693 §2.1: grant_type, subject_token + type, actor pair, requested type, repeated audience/resource."""
    grant = TokenExchangeGrant(
        SUBJECT,
        actor_token="actor-token-value",
        actor_token_type=JWT_TOKEN_TYPE,
        requested_token_type=ACCESS_TOKEN_TYPE,
        audience=["api-a", "api-b"],
        resource=("https://r1.example/", "https://r2.example/"),
        scope="read write",
    )
    form = _form(grant, grant.scope(None))
    assert form[0] == ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
    assert ("subject_token", SUBJECT) in form and ("subject_token_type", ACCESS_TOKEN_TYPE) in form
    assert ("actor_token", "actor-token-value") in form and ("actor_token_type", JWT_TOKEN_TYPE) in form
    assert [v for k, v in form if k == "audience"] == ["api-a", "api-b"]
    assert [v for k, v in form if k == "resource"] == ["https://r1.example/", "https://r2.example/"]
    assert ("scope", "read write") in form and ("requested_token_type", ACCESS_TOKEN_TYPE) in form
    request = token_request(TOKEN_URL, grant.grant_type, ClientSecretBasic("c", "s"), params=grant.params())
    assert SUBJECT in request.secrets and "actor-token-value" in request.secrets


def test_token_exchange_minimal_sends_nothing_empty() -> None:
    """C3: no empty parameters; RFC 8693 §2.1: no actor_token_type without an actor_token."""
    form = _form(TokenExchangeGrant(SUBJECT))
    names = [name for name, _ in form]
    assert names == ["grant_type", "subject_token", "subject_token_type"]  # Basic auth goes in the header
    assert all(value for _, value in form)


def test_token_exchange_validation() -> None:
    with pytest.raises(ValueError, match="actor_token"):
        TokenExchangeGrant(SUBJECT, actor_token="a")
    with pytest.raises(ValueError, match="actor_token"):
        TokenExchangeGrant(SUBJECT, actor_token_type=JWT_TOKEN_TYPE)
    with pytest.raises(ValueError):
        TokenExchangeGrant("")
    with pytest.raises(ValueError):
        TokenExchangeGrant(SUBJECT, "")
    # A callable's answer is known only at request time: a typed, transient error then (a file mid-rotation).
    with pytest.raises(CredentialSourceError, match="returned an empty string"):
        TokenExchangeGrant(lambda: "").params()


def test_callables_are_asked_for_every_request() -> None:
    calls: list[int] = []

    def subject() -> str:
        calls.append(1)
        return f"subject-{len(calls)}"

    grant = TokenExchangeGrant(subject)
    assert dict(_form(grant))["subject_token"] == "subject-1"
    assert dict(_form(grant))["subject_token"] == "subject-2"
    bearer = JWTBearerGrant(lambda: "a.b.c")
    assert _form(bearer)[0] == ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
    assert ("assertion", "a.b.c") in _form(bearer)


# -- caching keyed by what changes the token --------------------------------------------------------------------------


def test_the_cache_key_follows_the_subject_token_and_never_holds_it(tmp_path: Any) -> None:
    a = _client(TokenExchangeGrant("subject-token-AAAA"))
    b = _client(TokenExchangeGrant("subject-token-BBBB"))
    assert a.cache_key != b.cache_key
    assert a.cache_key == _client(TokenExchangeGrant("subject-token-AAAA")).cache_key
    store = FileStore(tmp_path)
    store.save(a.cache_key, Token("at-1234567890"))
    names = " ".join(p.name for p in tmp_path.rglob("*"))
    assert "subject-token-AAAA" not in names and a.cache_key in names


@pytest.mark.parametrize(
    "other",
    [
        {"actor_token": "actor-1", "actor_token_type": JWT_TOKEN_TYPE},
        {"requested_token_type": ID_TOKEN_TYPE},
        {"audience": "api-b"},
        {"resource": "https://r2.example/"},
        {"scope": "write"},
        {"subject_token_type": JWT_TOKEN_TYPE},
    ],
)
def test_each_exchange_parameter_is_a_different_entry(other: dict[str, Any]) -> None:
    base: dict[str, Any] = {"subject_token": SUBJECT, "audience": "api-a", "scope": "read"}
    assert _client(TokenExchangeGrant(**base)).cache_key != _client(TokenExchangeGrant(**{**base, **other})).cache_key


def test_a_grant_differs_from_client_credentials() -> None:
    assert _client(TokenExchangeGrant(SUBJECT)).cache_key != _client("client_credentials").cache_key
    assert _client(TokenExchangeGrant(SUBJECT)).cache_key != _client(JWTBearerGrant("a.b.c")).cache_key


def _assertion(sub: str, jti: str) -> str:
    now = int(time.time())
    claims = {"iss": "https://issuer.example", "sub": sub, "aud": TOKEN_URL, "exp": now + 60, "jti": jti}
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_jwt_bearer_cache_key_is_the_assertion_subject() -> None:
    """Two assertions for the same subject get the same token; another subject is another entry."""
    alice_1 = _client(JWTBearerGrant(_assertion("alice", "j1")))
    alice_2 = _client(JWTBearerGrant(_assertion("alice", "j2")))
    bob = _client(JWTBearerGrant(_assertion("bob", "j3")))
    assert alice_1.cache_key == alice_2.cache_key != bob.cache_key
    # Not a JWT: its hash. A callable: its cache_id.
    assert _client(JWTBearerGrant("opaque-1")).cache_key != _client(JWTBearerGrant("opaque-2")).cache_key
    assert (
        _client(JWTBearerGrant(lambda: "x", cache_id="a")).cache_key
        != _client(JWTBearerGrant(lambda: "x", cache_id="b")).cache_key
    )


def test_grant_reprs_hide_the_tokens() -> None:
    shown = repr(TokenExchangeGrant(SUBJECT, actor_token="actor-secret-1", actor_token_type=JWT_TOKEN_TYPE))
    assert SUBJECT not in shown and "actor-secret-1" not in shown
    assertion = _assertion("alice", "j1")
    assert assertion not in repr(JWTBearerGrant(assertion)) and assertion[:30] not in repr(JWTBearerGrant(assertion))
    assert repr(_client(TokenExchangeGrant(SUBJECT))).endswith("grant='token_exchange')")


# -- Token.issued_token_type in the store (RFC 8693 §2.2.1) -----------------------------------------------------------


def test_issued_token_type_round_trips_through_the_codec() -> None:
    token = Token("at-1234567890", expires_at=2e9, issued_at=1.9e9, issued_token_type=ACCESS_TOKEN_TYPE)
    assert decode_token(encode_token(token)).issued_token_type == ACCESS_TOKEN_TYPE


def test_documents_without_it_are_unchanged_and_still_read() -> None:
    """Backwards compatible both ways: a token of another grant is written exactly as before, and an older
    document (no member) reads as None."""
    plain = Token("at-1234567890", expires_at=2e9, issued_at=1.9e9)
    document = json.loads(encode_token(plain))
    assert "issued_token_type" not in document["token"]
    assert decode_token(encode_token(plain)) == plain and decode_token(encode_token(plain)).issued_token_type is None
    document["token"]["issued_token_type"] = 5
    with pytest.raises(TypeError):
        decode_token(json.dumps(document).encode())


def test_signed_jwt_bearer_assertions() -> None:
    """RFC 7523 §2.1/§3: iss, sub, aud, exp, iat and a new jti per request, signed with the key; cached by
    iss/sub/aud exactly like a fixed assertion for the same subject."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    grant = JWTBearerGrant.signed(
        key, issuer="https://issuer.example", subject="alice", audience=TOKEN_URL, claims={"scope": "x", "sub": "no"}
    )
    sent = [dict(_form(grant))["assertion"] for _ in range(2)]
    claims = [jwt.decode(a, key.public_key(), algorithms=["ES256"], audience=TOKEN_URL) for a in sent]
    assert claims[0]["iss"] == "https://issuer.example" and claims[0]["sub"] == "alice" and claims[0]["scope"] == "x"
    assert claims[0]["jti"] != claims[1]["jti"] and claims[0]["exp"] - claims[0]["iat"] == 300
    fixed = jwt.encode({"iss": "https://issuer.example", "sub": "alice", "aud": TOKEN_URL}, "k" * 32)
    assert _client(grant).cache_key == _client(JWTBearerGrant(fixed)).cache_key
    other = JWTBearerGrant.signed(key, issuer="https://issuer.example", subject="bob", audience=TOKEN_URL)
    assert _client(other).cache_key != _client(grant).cache_key


@pytest.mark.parametrize(
    "grant",
    [
        lambda cache_id=None: TokenExchangeGrant(lambda: "subject-of-the-moment", cache_id=cache_id),
        lambda cache_id=None: TokenExchangeGrant(
            SUBJECT, actor_token=lambda: "actor", actor_token_type=ACCESS_TOKEN_TYPE, cache_id=cache_id
        ),
        lambda cache_id=None: JWTBearerGrant(lambda: "a.b.c", cache_id=cache_id),
    ],
    ids=["subject", "actor", "assertion"],
)
def test_a_callable_subject_in_a_given_store_needs_a_cache_id(grant: Any) -> None:
    """A callable cannot be looked into: two clients sharing a store with callables for two subjects would share
    one cache entry and hand one subject the other's token. With a store given, cache_id= is required (a typed
    error at construction); the client's own MemoryStore, or a cache_id, is fine."""
    with pytest.raises(ConfigurationError, match="cache_id"):
        _client(grant(), store=MemoryStore())
    assert _client(grant()).cache_key  # its own store: nobody else's tokens in it
    a = _client(grant("subject-a"), store=MemoryStore())
    assert a.cache_key != _client(grant("subject-b"), store=MemoryStore()).cache_key
