"""From a protected resource to a configured client: RFC 9728 discovery, then RFC 8414/OIDC, then RFC 8707.

``TokenClient.for_resource(url, client_id, ...)`` (and ``await AsyncTokenClient.for_resource(...)``) does, once
and explicitly:

1. fetch the resource's metadata: from ``url`` with the well-known segment inserted (RFC 9728 §3.1), or from the
   ``resource_metadata`` URL of the ``WWW-Authenticate`` header of a 401 the resource answered (§5.1). That URL
   is fetched only if it passes the endpoint policy (https, or http to loopback) *and* is on the resource's own
   origin (§7.7: a resource that points elsewhere could send the client to an attacker's authorization server);
2. check the document's ``resource`` is the URL asked about (§3.3), or use nothing in it;
3. pick an authorization server (the first listed, or ``choose_authorization_server``), discover it (OIDC, then
   RFC 8414, issuer checked, C28) and configure the client with it and ``resource=`` (RFC 8707) set to the
   resource identifier; DPoP is turned on when the resource requires DPoP-bound tokens.

The flow below is shared by both clients (sync and async drivers run it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._discovery import cached_discovery
from ._flow import Flow, Get, SimpleIO, run
from ._protocol.discovery import ServerMetadata
from ._protocol.resource_metadata import (
    ResourceMetadata,
    challenge_metadata_url,
    check_metadata_location,
    metadata_url,
    parse_resource_metadata,
)
from ._protocol.www_authenticate import parse_www_authenticate
from .exceptions import ResourceMetadataError

logger = logging.getLogger("tokensmith.resource")

__all__ = ["ResourceMetadata", "discover_resource"]

AuthorizationServerChooser = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class ResourcePlan:
    """What discovery found: the resource's metadata, the chosen authorization server's, and a challenge's scope."""

    resource: ResourceMetadata
    server: ServerMetadata
    challenge_scope: str | None


def resource_metadata_flow(
    url: str, *, www_authenticate: str | None = None, allow_insecure: bool = False
) -> Flow[ResourceMetadata]:
    """Fetch and validate the metadata of the resource at ``url`` (see the module docstring, steps 1-2)."""
    location = challenge_metadata_url(www_authenticate)
    if location is not None:
        location = check_metadata_location(location, url, allow_insecure=allow_insecure)
    else:
        location = metadata_url(url)
    logger.debug("fetching protected resource metadata from %s", location)
    return parse_resource_metadata((yield Get(location)), url, allow_insecure=allow_insecure)


def resource_plan_flow(
    url: str,
    transport: Any,
    *,
    www_authenticate: str | None = None,
    choose_authorization_server: AuthorizationServerChooser | None = None,
) -> Flow[ResourcePlan]:
    allow_insecure = bool(getattr(transport, "allow_insecure_http", False))
    resource = yield from resource_metadata_flow(url, www_authenticate=www_authenticate, allow_insecure=allow_insecure)
    servers = resource.authorization_servers
    issuer = servers[0] if choose_authorization_server is None else choose_authorization_server(servers)
    if issuer not in servers:
        raise ResourceMetadataError("choose_authorization_server must return one of the servers it was given")
    server = yield from cached_discovery(issuer, transport)
    return ResourcePlan(resource, server, _challenge_scope(www_authenticate))


def client_settings(plan: ResourcePlan, url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The client's constructor arguments for ``plan``, the caller's own ``kwargs`` taking precedence."""
    settings = dict(kwargs)
    settings.setdefault("resource", url)  # RFC 8707: the resource identifier the metadata vouched for
    if settings.get("scope") is None and plan.challenge_scope:
        settings["scope"] = plan.challenge_scope  # RFC 6750 §3 / RFC 9728 §5.1: what the resource asked for
    requested = str(settings.get("scope") or "").split()
    supported = set(plan.resource.scopes_supported)
    if supported and (unknown := [s for s in requested if s not in supported]):
        logger.warning("scope %s is not among the resource's scopes_supported", " ".join(unknown))
    if plan.resource.dpop_bound_access_tokens_required:
        if settings.get("dpop") is None:
            settings["dpop"] = True  # RFC 9728 §2: the resource accepts only DPoP-bound access tokens
        elif settings.get("dpop") is False:
            logger.warning("the resource requires DPoP-bound access tokens, but dpop=False was given")
    return settings


def discover_resource(url: str, *, www_authenticate: str | None = None, transport: Any = None) -> ResourceMetadata:
    """The validated protected resource metadata of ``url`` (RFC 9728), from the well-known location or from a
    401's ``WWW-Authenticate`` ``resource_metadata`` (same-origin only, see the module docstring)."""
    if transport is None:
        from ._transport import Transport

        transport = Transport()
    allow_insecure = bool(getattr(transport, "allow_insecure_http", False))
    flow = resource_metadata_flow(url, www_authenticate=www_authenticate, allow_insecure=allow_insecure)
    return run(flow, SimpleIO(transport.post, transport.get))


def _challenge_scope(www_authenticate: str | None) -> str | None:
    if not www_authenticate:
        return None
    for scheme, params in parse_www_authenticate(www_authenticate):
        if scheme in ("bearer", "dpop") and params.get("scope"):
            return params["scope"]
    return None


# The public face (see tokensmith/__init__.py): shown as tokensmith.<name>.
ResourceMetadata.__module__ = "tokensmith"
