"""Client authentication at the token, device and revocation endpoints (RFC 6749 §2.3, C1, C2).

Each method adds exactly one way of authenticating to a request: never Basic together with a body secret.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import quote_plus

from .._redact import redact
from .messages import FormPairs

BasicEncoding = Literal["rfc6749", "secret_only", "raw"]


def basic_authorization(client_id: str, client_secret: str, encoding: BasicEncoding = "rfc6749") -> str:
    """The ``Authorization`` header value for ``client_secret_basic``.

    - ``rfc6749`` (default, C1): form-urlencode both id and secret, then base64 (RFC 6749 §2.3.1, errata 4749).
      Keycloak needs this for secrets containing ``+``.
    - ``secret_only``: the seed module's behaviour, encoding the secret only.
    - ``raw``: RFC 7617 as written, for servers that do not decode.
    """
    if encoding == "rfc6749":
        user, password = quote_plus(client_id), quote_plus(client_secret)
    elif encoding == "secret_only":
        user, password = client_id, quote_plus(client_secret)
    elif encoding == "raw":
        if ":" in client_id:
            raise ValueError("a raw Basic client_id cannot contain ':'; use the rfc6749 encoding")
        user, password = client_id, client_secret
    else:
        raise ValueError(f"unknown Basic encoding {encoding!r}")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class ClientAuth(Protocol):
    """Adds client authentication to a form request; returns the secrets it added (to scrub from errors).

    A method whose ``apply`` may block (it calls a KMS, an HSM, a vault) says so with ``may_block = True``:
    ``AsyncTokenClient`` then builds its requests in a worker thread, not on the event loop."""

    @property
    def client_id(self) -> str | None: ...

    def apply(self, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]: ...


def apply_client_auth(auth: ClientAuth, endpoint: str, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]:
    """Authenticate one request to ``endpoint``. A method that needs to know where the request goes (a JWT
    assertion's ``aud``, RFC 7523 §3) has ``apply_to(endpoint, form, headers)``; every other ``ClientAuth`` (the
    built-in ones, the compat module's, a caller's own) keeps its plain ``apply``."""
    apply_to = getattr(auth, "apply_to", None)
    if callable(apply_to):
        return tuple(apply_to(endpoint, form, headers))
    return tuple(auth.apply(form, headers))


def may_block(auth: ClientAuth) -> bool:
    """True when authenticating a request calls a user's callable that may block (a KMS or HSM signer): an async
    driver builds such requests in a worker thread. False for in-memory keys and secrets (no thread hop)."""
    return bool(getattr(auth, "may_block", False))


def single_use(auth: ClientAuth) -> bool:
    """True when every request needs newly built credentials (a JWT assertion: a fresh ``jti`` and ``exp``)."""
    return bool(getattr(auth, "single_use", False))


@dataclass(frozen=True)
class NoClientAuth:
    """A public client (``none``): identifies itself with ``client_id`` in the body (RFC 6749 §3.2.1)."""

    client_id: str | None = None

    def apply(self, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]:
        if self.client_id:
            form.append(("client_id", self.client_id))
        return ()


@dataclass(frozen=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with the id and secret (C1)."""

    client_id: str
    client_secret: str = field(repr=False)
    encoding: BasicEncoding = "rfc6749"

    def apply(self, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]:
        value = basic_authorization(self.client_id, self.client_secret, self.encoding)
        headers["Authorization"] = value
        # The bare base64 too: a server or proxy that reflects the header would show that part.
        return (self.client_secret, value, value.partition(" ")[2])

    def __repr__(self) -> str:
        return f"ClientSecretBasic(client_id={self.client_id!r}, client_secret={redact(self.client_secret)})"


@dataclass(frozen=True)
class ClientSecretPost:
    """``client_secret_post``: id and secret in the body (NOT RECOMMENDED by RFC 6749, but some IdPs need it)."""

    client_id: str
    client_secret: str = field(repr=False)

    def apply(self, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]:
        form.append(("client_id", self.client_id))
        form.append(("client_secret", self.client_secret))
        return (self.client_secret,)

    def __repr__(self) -> str:
        return f"ClientSecretPost(client_id={self.client_id!r}, client_secret={redact(self.client_secret)})"


@dataclass(frozen=True)
class PrebuiltAuthorization:
    """A caller-built ``Authorization`` header (the seed API's ``authorization_header``), optionally with a
    ``client_id`` in the body as the seed module sent it."""

    header_value: str = field(repr=False)
    client_id: str | None = None

    def apply(self, form: FormPairs, headers: dict[str, str]) -> tuple[str, ...]:
        if any(c in self.header_value for c in "\r\n\0"):
            raise ValueError("authorization header contains a line break or NUL")
        headers["Authorization"] = self.header_value
        if self.client_id:
            form.append(("client_id", self.client_id))
        _scheme, _, credentials = self.header_value.partition(" ")
        return (self.header_value, credentials) if credentials else (self.header_value,)

    def __repr__(self) -> str:
        return f"PrebuiltAuthorization(header_value={redact(self.header_value)}, client_id={self.client_id!r})"
