"""Logging out: revoke the refresh token at the server (RFC 7009, C29), then forget it.

Functions over a ``TokenClient`` (they use only its public face: ``discover()``, ``auth``, ``transport``,
``store``, ``cache_key``), so any client can log out.
"""

from __future__ import annotations

import logging

from ._protocol.messages import HttpRequest
from ._protocol.revocation import check_revocation_response, revocation_request
from ._retry import RetryPolicy
from .client import TokenClient
from .exceptions import DiscoveryError
from .token import Token

logger = logging.getLogger("tokensmith.client")

__all__ = ["logout", "revoke"]


def revoke(client: TokenClient, token: str, *, token_type_hint: str | None = None, endpoint: str | None = None) -> None:
    """Revoke ``token`` at the server's ``revocation_endpoint`` (``endpoint``, else discovered). Retried like a
    client-credentials request (revoking twice is harmless). ``DiscoveryError`` if the server advertises none."""
    if endpoint is None:
        metadata = client.discover()
        endpoint = metadata.revocation_endpoint if metadata is not None else None
    if endpoint is None:
        raise DiscoveryError(
            "the server advertises no revocation_endpoint (RFC 7009) and none was configured: pass "
            "--revocation-endpoint, or log out without revoking"
        )
    client.transport.check(endpoint)
    url: str = endpoint
    sent: list[HttpRequest] = []

    def call() -> None:
        # A retry carries a new client assertion (RFC 7523: the server refuses a jti it has seen).
        request = sent[-1].fresh() if sent else revocation_request(url, client.auth, token, token_type_hint)
        sent.append(request)
        check_revocation_response(client.transport.post(request), request.secrets)

    (client.retry or RetryPolicy()).run(call, replay_safe=True)
    logger.info("%s revoked at the server", token_type_hint or "token")


def logout(client: TokenClient, *, revoke_at_server: bool = True, endpoint: str | None = None) -> Token | None:
    """Revoke the stored refresh token (else the access token) when ``revoke_at_server``, then delete the stored
    token. If revoking fails the token is kept (the error is raised): a logout must not leave a live grant behind
    that the user can no longer see. Returns the token that was removed, if any."""
    stored = client.store.load(client.cache_key)
    if stored is None:
        client._forget_dpop_key()  # a DPoP key (RFC 9449) goes with the identity, token or not
        return None
    if revoke_at_server:
        if stored.refresh_token:
            revoke(client, stored.refresh_token, token_type_hint="refresh_token", endpoint=endpoint)
        else:
            revoke(client, stored.access_token, token_type_hint="access_token", endpoint=endpoint)
    client.store.delete(client.cache_key)
    client._forget_dpop_key()
    client.forget()
    return stored
