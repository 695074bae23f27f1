"""Non-interactive extension grants for ``TokenClient(grant=...)``: the JWT bearer grant (RFC 7523 §2.1) and token
exchange (RFC 8693). C30, C31.

A grant object says what to send; the client does the rest as for client credentials (discovery, client
authentication, the store, single flight, renewal ahead of expiry). Renewal re-runs the grant, or uses the refresh
token when the server issued one. The assertion or subject token may be a callable returning a fresh one (a
workload identity file that rotates, a signer): it is called for every request. If it raises, or returns no token,
nothing is sent and the renewal fails with ``tokensmith.CredentialSourceError`` (transient: a token that is still
valid keeps being served; the callable's message is not shown, as it may name paths or credentials).

Tokens are cached by what changes them: the subject token's hash (never the token itself), the assertion's
issuer/subject/audience, the actor, the requested type, audience, resource and scope. A callable cannot be looked
into without calling it, so give ``cache_id=`` (e.g. the subject's name) when one store holds tokens of several
callables' subjects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._protocol.jwt_assertion import unverified_claims
from ._protocol.params import ScopeInput, normalize_scope
from ._protocol.token import GrantType
from ._redact import redact
from .exceptions import CredentialSourceError, TokensmithError

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "REFRESH_TOKEN_TYPE",
    "SAML1_TOKEN_TYPE",
    "SAML2_TOKEN_TYPE",
    "JWTBearerGrant",
    "TokenExchangeGrant",
]

#: RFC 8693 §3 token type identifiers.
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SAML1_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:saml1"
SAML2_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:saml2"

TokenSource = str | Callable[[], str]
Params = list[tuple[str, str | Iterable[str] | None]]


def _value(source: TokenSource, what: str) -> str:
    if not callable(source):
        if not isinstance(source, str) or not source:
            raise ValueError(f"{what} must be a non-empty string")
        return source
    # A callable is asked at each request: its failure is typed and transient (a rotating file, a vault), so a
    # renewal ahead of expiry keeps the valid token; never its message, which may name paths or credentials (C10).
    try:
        value = source()
    except TokensmithError:
        raise
    except Exception as error:
        raise CredentialSourceError(f"the {what} callable raised {type(error).__name__}") from None
    if not isinstance(value, str) or not value:
        shown = "an empty string" if value == "" else f"a {type(value).__name__}, not a string"
        raise CredentialSourceError(f"the {what} callable returned {shown}")
    return value


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _many(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _identity(claims: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((f"assertion_{name}", repr(claims.get(name))) for name in ("iss", "sub", "aud"))


class JWTBearerGrant:
    """RFC 7523 §2.1: ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with ``assertion=<JWT>``.

    ``assertion``: the JWT, or a callable returning a new one per request (a JWT bearer assertion usually carries
    a ``jti`` the server refuses twice, so renewals need new ones); ``JWTBearerGrant.signed(key, ...)`` signs them
    here. ``cache_id``: what tells this grant's tokens apart in a store (default: the assertion's ``iss``, ``sub``
    and ``aud``; a callable's cannot be known without calling it)."""

    name = "jwt_bearer"
    grant_type = GrantType.JWT_BEARER.value

    def __init__(self, assertion: TokenSource, *, cache_id: str | None = None) -> None:
        if not callable(assertion):
            _value(assertion, "assertion")
        self._assertion = assertion
        self.cache_id = cache_id
        self._identity: tuple[tuple[str, str], ...] | None = None
        self._may_block = callable(assertion)

    @classmethod
    def signed(
        cls,
        key: Any,
        *,
        issuer: str,
        subject: str,
        audience: str,
        kid: str | None = None,
        alg: str | None = None,
        lifetime: float = 300.0,
        claims: Mapping[str, Any] | None = None,
        password: bytes | str | None = None,
    ) -> JWTBearerGrant:
        """A grant whose assertions this process signs, a new one per request: ``iss`` = ``issuer``, ``sub`` =
        ``subject``, ``aud`` = ``audience`` (the authorization server's issuer or token endpoint), ``iat``,
        ``exp`` (``lifetime`` ahead), a random ``jti`` and any further ``claims`` (e.g. a ``scope`` claim some
        servers want). ``key``, ``kid``, ``alg``, ``password``: as for ``tokensmith.PrivateKeyJWT`` (PEM, JWK,
        ``cryptography`` key or a KMS signer; the ``jwt`` extra). Cached by issuer, subject and audience."""
        from .jwt_auth import PrivateKeyJWT  # PyJWT only when a key signs

        signer = PrivateKeyJWT(issuer, key, kid=kid, alg=alg, password=password, lifetime=lifetime)
        fixed = dict(claims or {})

        def assertion() -> str:
            return signer.assertion(audience, subject=subject, claims=fixed)

        grant = cls(assertion)
        grant._identity = _identity({"iss": issuer, "sub": subject, "aud": audience})
        grant._may_block = signer.may_block  # an in-memory key signs on the spot; a KMS signer may block
        return grant

    @property
    def may_block(self) -> bool:
        """Whether making the assertion calls a user's callable that may block (a rotating file, a KMS signer):
        ``AsyncTokenClient`` then builds the request in a worker thread."""
        return self._may_block

    def params(self) -> Params:
        return [("assertion", _value(self._assertion, "the JWT bearer assertion"))]

    def scope(self, default: str | None) -> str | None:
        return default

    def cache_material(self) -> tuple[tuple[str, str], ...]:
        if self.cache_id is not None:
            return (("cache_id", self.cache_id),)
        if self._identity is not None:
            return self._identity
        if callable(self._assertion):
            return (("assertion", "callable"), ("callable_unnamed", "1"))
        claims = unverified_claims(self._assertion)
        if claims is None:
            return (("assertion_sha256", _digest(self._assertion)),)
        # The same subject at the same issuer gets the same token, whichever assertion proved it.
        return _identity(claims)

    def __repr__(self) -> str:
        shown = "<callable>" if callable(self._assertion) else redact(self._assertion)
        return f"JWTBearerGrant(assertion={shown}, cache_id={self.cache_id!r})"


class TokenExchangeGrant:
    """RFC 8693 §2.1 token exchange: ``subject_token`` (or a callable returning it) of ``subject_token_type``,
    optionally ``actor_token`` + ``actor_token_type`` (delegation), ``requested_token_type``, and ``audience``,
    ``resource`` (both may repeat) and ``scope`` (each None: the client's own). The response's
    ``issued_token_type`` is kept on the ``Token``."""

    name = "token_exchange"
    grant_type = GrantType.TOKEN_EXCHANGE.value

    def __init__(
        self,
        subject_token: TokenSource,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        *,
        actor_token: TokenSource | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        audience: str | Iterable[str] | None = None,
        resource: str | Iterable[str] | None = None,
        scope: ScopeInput = None,
        cache_id: str | None = None,
    ) -> None:
        if not callable(subject_token):
            _value(subject_token, "subject_token")
        if not subject_token_type:
            raise ValueError("subject_token_type is required (RFC 8693 §2.1)")
        # RFC 8693 §2.1: actor_token_type is REQUIRED with an actor_token and MUST NOT be sent without one.
        if (actor_token is None) != (actor_token_type is None):
            raise ValueError("actor_token and actor_token_type go together (RFC 8693 §2.1)")
        self._subject_token = subject_token
        self.subject_token_type = subject_token_type
        self._actor_token = actor_token
        self.actor_token_type = actor_token_type
        self.requested_token_type = requested_token_type
        self.audience = _many(audience)
        self.resource = _many(resource)
        self._scope = normalize_scope(scope)
        self.cache_id = cache_id

    def params(self) -> Params:
        params: Params = [
            ("subject_token", _value(self._subject_token, "subject_token")),
            ("subject_token_type", self.subject_token_type),
        ]
        if self._actor_token is not None:
            params += [
                ("actor_token", _value(self._actor_token, "actor_token")),
                ("actor_token_type", self.actor_token_type),
            ]
        params += [
            ("requested_token_type", self.requested_token_type),
            ("audience", self.audience or None),
            ("resource", self.resource or None),
        ]
        return params

    def scope(self, default: str | None) -> str | None:
        return self._scope if self._scope is not None else default

    @property
    def may_block(self) -> bool:
        """Whether the subject or actor token comes from a callable (which may block: a file, a vault, a metadata
        service): ``AsyncTokenClient`` then builds the request in a worker thread."""
        return callable(self._subject_token) or callable(self._actor_token)

    def cache_material(self) -> tuple[tuple[str, str], ...]:
        def source(name: str, value: TokenSource | None) -> tuple[str, str]:
            if value is None:
                return (name, "")
            return (name, "callable") if callable(value) else (f"{name}_sha256", _digest(value))

        material = [
            ("cache_id", self.cache_id or ""),
            ("subject_token_type", self.subject_token_type),
            ("actor_token_type", self.actor_token_type or ""),
            ("requested_token_type", self.requested_token_type or ""),
            ("audience", " ".join(sorted(self.audience))),
            ("resource", " ".join(sorted(self.resource))),
            ("scope", " ".join(sorted((self._scope or "").split()))),
        ]
        if self.cache_id is None:
            material += [source("subject_token", self._subject_token), source("actor_token", self._actor_token)]
            if callable(self._subject_token) or callable(self._actor_token):
                material.append(("callable_unnamed", "1"))  # see ClientCore: refused with a shared store
        return tuple(material)

    def __repr__(self) -> str:
        shown = "<callable>" if callable(self._subject_token) else redact(self._subject_token)
        return (
            f"TokenExchangeGrant(subject_token={shown}, subject_token_type={self.subject_token_type!r}, "
            f"requested_token_type={self.requested_token_type!r}, audience={list(self.audience)!r})"
        )


ExtensionGrant = JWTBearerGrant | TokenExchangeGrant

# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
JWTBearerGrant.__module__ = "tokensmith"
TokenExchangeGrant.__module__ = "tokensmith"
