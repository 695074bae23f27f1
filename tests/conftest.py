"""Shared fixtures: the real IdP (tests/idp, node oidc-provider), a request-counting proxy in front of it, and the
fault-injecting server."""

from cli_harness import idp_proxy
from fault_server import fault_server
from idp_harness import idp, idp_short_device_ttl

__all__ = ["fault_server", "idp", "idp_proxy", "idp_short_device_ttl"]
