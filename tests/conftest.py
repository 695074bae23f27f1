"""Shared fixtures: the sandboxed command line (``cli``) and an issuer nothing listens on (``issuer``), the real
IdP (tests/idp, node oidc-provider), a request-counting proxy in front of it, and the fault-injecting server."""

from cli_harness import cli, idp_proxy, issuer
from fault_server import fault_server
from idp_harness import idp, idp_short_device_ttl

__all__ = ["cli", "fault_server", "idp", "idp_proxy", "idp_short_device_ttl", "issuer"]
