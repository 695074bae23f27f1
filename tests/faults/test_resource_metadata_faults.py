"""Protected resource metadata (RFC 9728) from a hostile or misconfigured resource, against the fault server:
what the test resource server (tests/resource_server.py) will not serve."""

from __future__ import annotations

import pytest

from fault_server import FaultServer, Reply
from tokensmith import ResourceMetadataError, TokenClient

WELL_KNOWN = "/.well-known/oauth-protected-resource/api"


def _serve_issuer(server: FaultServer) -> str:
    issuer = server.url("/as")
    metadata = Reply(json={"issuer": issuer, "token_endpoint": server.url("/as/token")})
    server.default("/as/.well-known/openid-configuration", metadata)
    server.default("/.well-known/oauth-authorization-server/as", metadata)
    return issuer


def test_entries_that_are_not_issuer_identifiers_are_skipped(fault_server: FaultServer) -> None:
    """RFC 9728 §2: ``authorization_servers`` lists issuer identifiers (RFC 8414 §2: an http(s) URL, no query or
    fragment). A bare name or an issuer with a query or fragment was taken as usable and, listed first, picked:
    discovery then failed on it (an ``InvalidEndpointError`` from the HTTP layer) although a good issuer followed."""
    issuer = _serve_issuer(fault_server)
    url = fault_server.url("/api")
    listed = ["as.example", "//as.example/x", f"{issuer}?tenant=1", f"{issuer}#f", "https:///nohost", issuer]
    fault_server.script(WELL_KNOWN, Reply(json={"resource": url, "authorization_servers": listed}))
    client = TokenClient.for_resource(url, "cid", "secret")
    assert client.token_endpoint == fault_server.url("/as/token")
    assert client.resource_metadata is not None and client.resource_metadata.authorization_servers == (issuer,)
    assert fault_server.count(WELL_KNOWN) == 1

    fault_server.script(WELL_KNOWN, Reply(json={"resource": url, "authorization_servers": listed[:-1]}))
    with pytest.raises(ResourceMetadataError, match="no usable authorization_servers"):
        TokenClient.for_resource(url, "cid", "secret")
    assert [r.path for r in fault_server.recorded()][-1] == WELL_KNOWN  # nothing fetched after the document
