"""Authorization server metadata: RFC 8414 and OpenID Connect Discovery (C18, C28)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..exceptions import DiscoveryError, InsecureEndpointError, InvalidEndpointError
from .errors import decode_json_object
from .messages import HttpResponse
from .urls import check_endpoint

OIDC_SUFFIX = "/.well-known/openid-configuration"
RFC8414_PREFIX = "/.well-known/oauth-authorization-server"


def metadata_urls(issuer: str) -> list[str]:
    """Where to look, in order: OpenID Connect Discovery §4 *appends* its suffix to the issuer; RFC 8414 §3
    *inserts* its prefix between the host and the issuer's path (C28)."""
    parts = urlsplit(issuer)
    if parts.query or parts.fragment:
        raise InvalidEndpointError("an issuer identifier has no query or fragment (RFC 8414 §2)")
    path = parts.path.rstrip("/")
    oidc = urlunsplit((parts.scheme, parts.netloc, path + OIDC_SUFFIX, "", ""))
    rfc8414 = urlunsplit((parts.scheme, parts.netloc, RFC8414_PREFIX + path, "", ""))
    return [oidc, rfc8414]


@dataclass(frozen=True)
class ServerMetadata:
    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None
    introspection_endpoint: str | None = None
    #: RFC 8414 §2: defaults to ``client_secret_basic`` when absent.
    token_endpoint_auth_methods_supported: tuple[str, ...] = ("client_secret_basic",)
    grant_types_supported: tuple[str, ...] = ("authorization_code", "implicit")
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Where the browser login sends the person (RFC 6749 §3.1). Kept as advertised: the browser login checks it
    #: (https, or http to loopback) when it is used, so an odd value never breaks discovery for other grants.
    authorization_endpoint: str | None = None
    #: RFC 9207 §3: the server puts ``iss`` in every authorization response; the browser login then requires it.
    authorization_response_iss_parameter_supported: bool = False


def parse_metadata(response: HttpResponse, expected_issuer: str, *, allow_insecure: bool = False) -> ServerMetadata:
    """Validate a metadata document. The ``issuer`` in it MUST be identical to the one we asked for, or the
    document MUST NOT be used (RFC 8414 §3.3; mix-up defence, C23). Endpoints must be https (or loopback)."""
    what = "authorization server metadata"
    obj = decode_json_object(response, what)
    issuer = obj.get("issuer")
    if issuer != expected_issuer:
        raise DiscoveryError(
            f"metadata issuer {str(issuer)[:200]!r} is not the issuer asked for {expected_issuer!r} (RFC 8414 §3.3)"
        )
    endpoints: dict[str, str | None] = {}
    for name in ("token_endpoint", "device_authorization_endpoint", "revocation_endpoint", "introspection_endpoint"):
        value = obj.get(name)
        if value is None:
            endpoints[name] = None
            continue
        if not isinstance(value, str):
            raise DiscoveryError(f"{what}: {name} is not a string")
        try:
            endpoints[name] = check_endpoint(value, allow_insecure=allow_insecure)
        except (InvalidEndpointError, InsecureEndpointError) as error:
            raise DiscoveryError(f"{what}: {name} is not usable: {error}") from error
    token_endpoint = endpoints.pop("token_endpoint")
    authorization_endpoint = obj.get("authorization_endpoint")
    if token_endpoint is None:
        raise DiscoveryError(f"{what} has no token_endpoint")
    return ServerMetadata(
        issuer=issuer,
        token_endpoint=token_endpoint,
        token_endpoint_auth_methods_supported=_str_tuple(
            obj, "token_endpoint_auth_methods_supported", ("client_secret_basic",)
        ),
        grant_types_supported=_str_tuple(obj, "grant_types_supported", ("authorization_code", "implicit")),
        raw=obj,
        authorization_endpoint=authorization_endpoint if isinstance(authorization_endpoint, str) else None,
        authorization_response_iss_parameter_supported=obj.get("authorization_response_iss_parameter_supported")
        is True,
        **endpoints,
    )


def _str_tuple(obj: Mapping[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiscoveryError(f"authorization server metadata: {name} is not a list of strings")
    return tuple(value)
