"""OAuth 2.0 Protected Resource Metadata (RFC 9728), without I/O.

- where the document is: ``/.well-known/oauth-protected-resource`` *inserted* between the host and the resource
  identifier's path (§3.1), or the ``resource_metadata`` URL of a ``WWW-Authenticate`` challenge (§5.1);
- what must hold before anything in it is used: its ``resource`` is identical to the resource identifier the
  client used (§3.3; for a challenge, the URL the client requested), ``authorization_servers`` are issuer URLs
  (https, or http to loopback), and the document is a JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..exceptions import InsecureEndpointError, InvalidEndpointError, ResourceMetadataError
from .errors import decode_json_object
from .messages import HttpResponse
from .urls import check_endpoint
from .www_authenticate import parse_www_authenticate

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def metadata_url(resource: str) -> str:
    """The metadata URL of a resource identifier: the well-known segment inserted before its path (§3.1). A
    resource identifier has no fragment (§2, RFC 8707 §2); a query is kept, as §3.1 says."""
    parts = urlsplit(resource)
    if parts.fragment:
        raise ResourceMetadataError("a resource identifier has no fragment (RFC 9728 §1.2, RFC 8707 §2)")
    if not parts.scheme or not parts.netloc:
        raise ResourceMetadataError(f"not an absolute resource URL: {resource[:200]!r}")
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, parts.query, ""))


def same_resource(a: str, b: str) -> bool:
    """Identical as RFC 9728 §3.3 requires, up to what URL syntax itself makes equal: case of scheme and host,
    and an empty path versus ``/`` (RFC 3986 §6.2.2, §6.2.3). Nothing else (no trailing-slash games in paths)."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (
        pa.scheme.lower() == pb.scheme.lower()
        and pa.netloc.lower() == pb.netloc.lower()
        and (pa.path or "/") == (pb.path or "/")
        and pa.query == pb.query
        and not pa.fragment
        and not pb.fragment
    )


def challenge_metadata_url(www_authenticate: str | None) -> str | None:
    """The ``resource_metadata`` parameter of the first ``Bearer`` or ``DPoP`` challenge that has one (§5.1)."""
    if not www_authenticate:
        return None
    for scheme, params in parse_www_authenticate(www_authenticate):
        if scheme in ("bearer", "dpop") and params.get("resource_metadata"):
            return params["resource_metadata"]
    return None


def check_metadata_location(url: str, resource: str, *, allow_insecure: bool = False) -> str:
    """A metadata URL taken from a challenge may be fetched only if it is a URL we would send anything to (https,
    or http to loopback: the endpoint policy) on the resource's own origin (scheme, host and port). A resource
    server answering for another origin is how RFC 9728 §7.7 (impersonation) starts: such a URL is refused."""
    try:
        check_endpoint(url, allow_insecure=allow_insecure)
    except (InsecureEndpointError, InvalidEndpointError) as error:
        raise ResourceMetadataError(f"the resource_metadata URL is refused: {error}") from error
    if _origin(url) != _origin(resource):
        raise ResourceMetadataError(
            f"the resource_metadata URL {_origin(url)!r} is not on the resource's origin {_origin(resource)!r}; "
            "not followed (RFC 9728 §7.7). Pass the metadata URL yourself if you trust it"
        )
    return url


@dataclass(frozen=True)
class ResourceMetadata:
    """A validated protected resource metadata document (RFC 9728 §2)."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] = ()
    bearer_methods_supported: tuple[str, ...] = ()
    dpop_signing_alg_values_supported: tuple[str, ...] = ()
    #: §2: the resource always requires DPoP-bound access tokens (RFC 9449).
    dpop_bound_access_tokens_required: bool = False
    resource_name: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def parse_resource_metadata(
    response: HttpResponse, expected_resource: str, *, allow_insecure: bool = False
) -> ResourceMetadata:
    """Validate a metadata document for ``expected_resource``: its ``resource`` MUST be identical, or nothing
    in it is used (§3.3); at least one usable authorization server (the client needs one to go on)."""
    what = "protected resource metadata"
    obj = decode_json_object(response, what)
    resource = obj.get("resource")
    if not isinstance(resource, str) or not same_resource(resource, expected_resource):
        raise ResourceMetadataError(
            f"{what}: resource {str(resource)[:200]!r} is not the resource asked about {expected_resource!r} "
            "(RFC 9728 §3.3); the document is not used"
        )
    servers = _strings(obj, "authorization_servers", what)
    usable: list[str] = []
    for server in servers:
        if not _is_issuer(server):
            continue  # one bad entry does not spoil the others (nor is it picked first); none at all is an error
        try:
            usable.append(check_endpoint(server, allow_insecure=allow_insecure))
        except (InsecureEndpointError, InvalidEndpointError):
            continue
    if not usable:
        raise ResourceMetadataError(f"{what}: no usable authorization_servers (https, or http to loopback)")
    dpop_required = obj.get("dpop_bound_access_tokens_required", False)
    if not isinstance(dpop_required, bool):
        raise ResourceMetadataError(f"{what}: dpop_bound_access_tokens_required is not a boolean")
    name = obj.get("resource_name")
    return ResourceMetadata(
        resource=resource,
        authorization_servers=tuple(usable),
        scopes_supported=_strings(obj, "scopes_supported", what),
        bearer_methods_supported=_strings(obj, "bearer_methods_supported", what),
        dpop_signing_alg_values_supported=_strings(obj, "dpop_signing_alg_values_supported", what),
        dpop_bound_access_tokens_required=dpop_required,
        resource_name=name if isinstance(name, str) else None,
        raw=obj,
    )


def _strings(obj: Mapping[str, Any], name: str, what: str) -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResourceMetadataError(f"{what}: {name} is not an array of strings")
    return tuple(value)


def _is_issuer(value: str) -> bool:
    """An issuer identifier (RFC 9728 §2 ``authorization_servers``, RFC 8414 §2): an absolute http(s) URL with a
    host and no query or fragment. The endpoint policy alone lets a scheme-less name through (it leaves those to
    the HTTP layer), which discovery could then only fail on."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(host) and not parts.query and not parts.fragment


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"
