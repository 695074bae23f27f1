"""Shared fixtures: the real IdP (tests/idp, node oidc-provider) and the fault-injecting server."""

from fault_server import fault_server
from idp_harness import idp, idp_short_device_ttl

__all__ = ["fault_server", "idp", "idp_short_device_ttl"]
