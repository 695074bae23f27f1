"""Token endpoint requests and responses (RFC 6749 §4.4, §5, §6; RFC 8628 §3.4; C3–C9, C11)."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._redact import redact
from ..exceptions import InvalidResponse, UnexpectedTokenType
from .client_auth import ClientAuth, apply_client_auth, may_block, single_use
from .errors import _clean_text, coerce_seconds, decode_json_object, optional_str, required_str
from .messages import FormPairs, HttpRequest, HttpResponse
from .params import ScopeInput, add_param, normalize_scope


class GrantType(str, enum.Enum):
    """Grant types (the first three are the seed module's members, with the same values)."""

    CLIENT_CREDS = "client_credentials"
    DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
    REFRESH_TOKEN = "refresh_token"
    TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
    JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    AUTHORIZATION_CODE = "authorization_code"


#: RFC 6750 §2.1 b64token: what may follow "Bearer " without breaking the header (C11).
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

JSON_ACCEPT: Mapping[str, str] = MappingProxyType({"Accept": "application/json"})

#: Grant parameters whose values are secrets: scrubbed from anything the server echoes back.
SECRET_PARAMS = frozenset(
    {"refresh_token", "device_code", "subject_token", "actor_token", "assertion", "code", "code_verifier"}
)

#: ``TokenResponse.warnings`` entry for a token exchange response without ``issued_token_type``.
MISSING_ISSUED_TOKEN_TYPE = (
    "token exchange response has no issued_token_type (RFC 8693 §2.2.1 requires it); the token is used as its "
    "token_type says, and Token.issued_token_type is None"
)
#: RFC 8693 §2.2.1: the ``token_type`` of an issued token that is not an access token.
NOT_APPLICABLE = "N_A"
#: ``TokenResponse.warnings`` entry for a response without ``token_type`` (the driver decides how to log it).
MISSING_TOKEN_TYPE = "token endpoint response has no token_type (RFC 6749 §5.1 requires it); assuming Bearer"


def token_request(
    url: str,
    grant_type: str,
    auth: ClientAuth,
    *,
    scope: ScopeInput = None,
    params: Iterable[tuple[str, str | Iterable[str] | None]] = (),
) -> HttpRequest:
    """Build a token request: grant type, client authentication (exactly one method, C2), scope, then any
    grant-specific parameters. Empty values are left out (C3). With single-use client authentication (a JWT
    assertion) the request knows how to rebuild itself (``HttpRequest.fresh``) for a retry."""
    params = tuple((name, _frozen(value)) for name, value in params)  # kept for a rebuild: no one-shot iterators
    scope = normalize_scope(scope)
    form: FormPairs = [("grant_type", str(grant_type.value if isinstance(grant_type, GrantType) else grant_type))]
    headers = dict(JSON_ACCEPT)
    secrets = list(apply_client_auth(auth, url, form, headers))
    add_param(form, "scope", scope)
    for name, value in params:
        add_param(form, name, value)
        if name in SECRET_PARAMS:
            secrets.extend([value] if isinstance(value, str) else list(value or ()))
    renew = None
    if single_use(auth):
        renew = functools.partial(token_request, url, grant_type, auth, scope=scope, params=params)
    return HttpRequest(
        url=url,
        form=form,
        headers=headers,
        secrets=tuple(s for s in secrets if s),
        renew=renew,
        renew_may_block=renew is not None and may_block(auth),
    )


def _frozen(value: str | Iterable[str] | None) -> str | Iterable[str] | None:
    if value is None or isinstance(value, str) or not isinstance(value, Iterable):
        return value  # add_param refuses a non-string
    return tuple(value)


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1), validated. Secrets are hidden from ``repr``."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None = None
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    id_token: str | None = field(default=None, repr=False)
    issued_token_type: str | None = None
    #: Seconds after receipt when the server advises renewing (not in RFC 6749; Azure AD sends it). None when
    #: absent or unusable: an unknown member must never make a good token response fail.
    refresh_in: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Wall-clock receipt time; ``expires_at`` is computed from it once.
    received_at: float = 0.0
    #: Things a driver may want to log (the protocol core logs nothing itself).
    warnings: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def expires_at(self) -> float | None:
        return None if self.expires_in is None else self.received_at + self.expires_in

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(access_token={redact(self.access_token)}, token_type={self.token_type!r}, "
            f"expires_in={self.expires_in!r}, refresh_token={redact(self.refresh_token)}, scope={self.scope!r})"
        )


def parse_token_response(
    response: HttpResponse,
    secrets: Iterable[str] = (),
    *,
    accepted_token_types: Iterable[str] = ("bearer",),
    token_exchange: bool = False,
) -> TokenResponse:
    """Validate a token endpoint response into a ``TokenResponse`` or raise a typed error.

    - errors, including HTTP-200 error bodies, raise their RFC 6749 §5.2 / RFC 8628 §3.5 class (C8);
    - ``access_token`` is required and must be a valid b64token (C11), so it can never inject a header;
    - ``token_type`` is compared case-insensitively against ``accepted_token_types`` (C7). A response with no
      ``token_type`` at all is taken as Bearer, with a warning: several IdPs and many test doubles omit it,
      and refusing would break callers of the seed module, which never looked;
    - ``expires_in`` may be absent or a numeric string (C6); unknown members are ignored but kept in ``raw``;
    - ``token_exchange`` (RFC 8693 §2.2.1): ``token_type`` may also be ``N_A`` (the issued token is not an access
      token; ``Token`` never puts it in an ``Authorization`` header), and a missing ``issued_token_type`` (REQUIRED)
      is a warning.
    """
    what = "token endpoint"
    secrets = tuple(secrets)
    obj = decode_json_object(response, what, secrets)
    status = response.status_code
    access_token = required_str(obj, "access_token", what, status=status)
    if not B64TOKEN.fullmatch(access_token):
        raise InvalidResponse(f"{what}: access_token is not a valid RFC 6750 b64token", status_code=status)
    token_type = optional_str(obj, "token_type", what, status=status)
    accepted = {t.lower() for t in accepted_token_types}
    if token_exchange:
        accepted.add(NOT_APPLICABLE.lower())
    warnings: tuple[str, ...] = ()
    if token_type is None:
        warnings = (MISSING_TOKEN_TYPE,)
        token_type = "Bearer"
    elif token_type.lower() not in accepted:
        # A DPoP token we did not ask for is unusable: without our proof-of-possession key it cannot be sent,
        # and sending it as a Bearer token would be wrong (RFC 9449 §5, §7.1).
        dpop = " (a DPoP-bound token, but no DPoP proof was sent: RFC 9449 §5)" if token_type.lower() == "dpop" else ""
        # Server text in our message: scrubbed of what we sent (a reflecting server or proxy may put it here).
        shown = (_clean_text(token_type, secrets) or "")[:40]
        raise UnexpectedTokenType(
            f"{what}: token_type {shown!r} is not one this client can use "
            f"({', '.join(sorted(accepted))}) (RFC 6749 §7.1){dpop}",
            status_code=status,
        )
    scope = obj.get("scope")
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        scope = " ".join(scope)  # non-conforming servers send an array; the meaning is unambiguous
    elif scope is not None and not isinstance(scope, str):
        raise InvalidResponse(f"{what}: scope is a {type(scope).__name__}, not a string", status_code=status)
    issued_token_type = optional_str(obj, "issued_token_type", what, status=status)
    if token_exchange and issued_token_type is None:
        warnings += (MISSING_ISSUED_TOKEN_TYPE,)
    return TokenResponse(
        access_token=access_token,
        token_type=token_type,
        expires_in=coerce_seconds(obj, "expires_in", what, status=status),
        refresh_token=optional_str(obj, "refresh_token", what, status=status),
        scope=scope or None,
        id_token=optional_str(obj, "id_token", what, status=status),
        issued_token_type=issued_token_type,
        refresh_in=_lenient_seconds(obj, "refresh_in", what),
        raw=obj,
        received_at=response.received_at,
        warnings=warnings,
    )


def _lenient_seconds(obj: dict[str, Any], name: str, what: str) -> int | None:
    """An optional, non-standard lifetime member: whole seconds, or None when absent or malformed."""
    try:
        return coerce_seconds(obj, name, what)
    except InvalidResponse:
        return None
