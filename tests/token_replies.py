"""Scripted token-endpoint answers for the fault server, shared by the client tests."""

from __future__ import annotations

from fault_server import Reply

#: An IdP that is down: transient by the RFC (``temporarily_unavailable``) and by the status (503).
DOWN = Reply(status=503, json={"error": "temporarily_unavailable"})


def token_body(n: int, lifetime: float = 100, rt: str | None = None) -> dict[str, object]:
    """A token response: access token ``at-<n>``, valid ``lifetime`` seconds, with refresh token ``rt`` if given."""
    body: dict[str, object] = {"access_token": f"at-{n}", "token_type": "Bearer", "expires_in": lifetime}
    if rt:
        body["refresh_token"] = rt
    return body
