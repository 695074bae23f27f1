"""TokenClient against the real IdP: discovery, each client authentication method (C1, C2), each grant,
proactive refresh with rotation (C9, C26), invalid_grant handling, and single flight across threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from counting_session import CountingSession
from fault_server import FaultServer, Reply
from idp_harness import CC_CLIENT, CC_POST_CLIENT, DEVICE_PUBLIC, ODD_CLIENT, LocalIdP
from tokensmith import ClientSecretBasic, ClientSecretPost, DevicePrompt, NoClientAuth, Token, TokenClient
from tokensmith import exceptions as exc
from tokensmith.integrations.requests_auth import TokenAuth

pytestmark = pytest.mark.idp
SCOPE = "openid offline_access"


def _approve_on_prompt(idp: LocalIdP) -> Any:
    def on_prompt(prompt: DevicePrompt) -> None:
        threading.Thread(target=idp.approve, args=(prompt.user_code,), daemon=True).start()

    return on_prompt


def test_discovery_and_client_credentials(idp: LocalIdP) -> None:
    """C18, C28: metadata found at the OIDC location, issuer identical, endpoints taken from it."""
    client = TokenClient.from_issuer(idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, scope="api:read")
    token = client.get_token()
    assert token.token_type.lower() == "bearer" and token.scope == "api:read" and token.refresh_token is None
    assert (
        client.metadata is not None
        and client.metadata.device_authorization_endpoint == idp.device_authorization_endpoint
    )
    assert client.get_token() is token  # cached


@pytest.mark.parametrize(
    "auth",
    [
        ClientSecretBasic(CC_CLIENT.client_id, CC_CLIENT.client_secret or ""),
        ClientSecretPost(CC_POST_CLIENT.client_id, CC_POST_CLIENT.client_secret or ""),
        ClientSecretBasic(ODD_CLIENT.client_id, ODD_CLIENT.client_secret or ""),  # '/' and ':' in the id (C1)
    ],
    ids=["basic-awkward-secret", "post", "basic-odd-client-id"],
)
def test_each_client_authentication_method(idp: LocalIdP, auth: Any) -> None:
    client = TokenClient(idp.token_endpoint, auth=auth)
    assert client.grant == "client_credentials"
    assert client.fetch_client_credentials().access_token


def test_odd_client_id_fails_with_the_seed_encoding(idp: LocalIdP) -> None:
    """Servers disagree on Basic encoding, so it is selectable; this one follows RFC 6749 §2.3.1."""
    auth = ClientSecretBasic(ODD_CLIENT.client_id, ODD_CLIENT.client_secret or "", "secret_only")
    with pytest.raises(exc.InvalidClient):
        TokenClient(idp.token_endpoint, auth=auth, retry=None).fetch_client_credentials()


def test_resource_indicator(idp: LocalIdP) -> None:
    """RFC 8707: an unknown resource is invalid_target."""
    client = TokenClient(
        idp.token_endpoint, CC_CLIENT.client_id, CC_CLIENT.client_secret, resource="https://unknown.example/"
    )
    with pytest.raises(exc.InvalidTarget):
        client.get_token()


def test_device_login_then_proactive_refresh_with_rotation(idp: LocalIdP) -> None:
    now = [time.time()]
    client = TokenClient.from_issuer(
        idp.issuer,
        DEVICE_PUBLIC.client_id,
        scope=SCOPE,
        interactive=True,
        on_prompt=_approve_on_prompt(idp),
        clock=lambda: now[0],
    )
    first = client.get_token()  # interactive device login
    assert first.refresh_token and client.stats.logins == 1
    assert client.get_token() is first
    now[0] = (first.expires_at or 0) - 30  # inside the leeway (60 s of a 3600 s token): refresh ahead of expiry
    second = client.get_token()
    assert second.access_token != first.access_token and second.refresh_token != first.refresh_token
    assert client.stats.refreshes == 1 and client.stats.logins == 1
    stored = client.store.load(client.cache_key)
    assert stored is not None and stored.refresh_token == second.refresh_token  # the rotated token is kept
    # The spent one is dead: a client that only has it gets invalid_grant, which it reports as LoginRequired.
    spent = TokenClient.from_issuer(idp.issuer, DEVICE_PUBLIC.client_id, scope=SCOPE)
    spent.store.save(spent.cache_key, first)
    with pytest.raises(exc.LoginRequired) as info:
        spent.refresh()
    assert isinstance(info.value.__cause__, exc.InvalidGrant)  # issue 7 item 7: chained


def test_invalid_grant_means_login_required_and_the_dead_token_is_dropped(idp: LocalIdP) -> None:
    client = TokenClient(
        idp.token_endpoint,
        auth=NoClientAuth(DEVICE_PUBLIC.client_id),
        device_authorization_endpoint=idp.device_authorization_endpoint,
        scope=SCOPE,
        on_prompt=_approve_on_prompt(idp),
    )
    token = client.login()
    client.refresh()  # rotates: `token`'s refresh token is now spent
    expired = Token(token.access_token, expires_at=time.time() - 1, refresh_token=token.refresh_token)
    client.store.save(client.cache_key, expired)
    client._token = None
    with pytest.raises(exc.LoginRequired):
        client.get_token(interactive=False)
    assert client.store.load(client.cache_key) is None and client.stats.invalid_grants == 1


def test_fifty_threads_cause_one_token_request(idp: LocalIdP) -> None:
    session = CountingSession()
    client = TokenClient(idp.token_endpoint, CC_CLIENT.client_id, CC_CLIENT.client_secret, session=session)
    barrier = threading.Barrier(50)
    tokens: list[str] = []

    def worker() -> None:
        barrier.wait()
        tokens.append(client.get_token().access_token)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(tokens) == 50 and len(set(tokens)) == 1
    assert session.count() == 1 and client.stats.token_requests == 1


def test_requests_auth_renews_once_on_invalid_token(idp: LocalIdP, fault_server: FaultServer) -> None:
    """C12 end to end: the resource server rejects the first token; TokenAuth asks the real IdP for a new one
    (one more token request), retries once, and later calls reuse the new token."""
    fault_server.script(
        "/api",
        Reply(
            status=401,
            json={"error": "invalid_token"},
            headers={"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'},
        ),
    )
    fault_server.default("/api", Reply(json={"ok": True}))
    session = CountingSession()
    client = TokenClient(idp.token_endpoint, CC_CLIENT.client_id, CC_CLIENT.client_secret, session=session)
    auth = TokenAuth(client)
    with requests.Session() as http:
        assert http.get(fault_server.url("/api"), auth=auth, timeout=10).json() == {"ok": True}
        for _ in range(5):
            http.get(fault_server.url("/api"), auth=auth, timeout=10).raise_for_status()
    sent = [r.headers["authorization"] for r in fault_server.recorded("/api")]
    assert len(sent) == 7 and sent[0] != sent[1] and len(set(sent[1:])) == 1
    assert session.count(idp.token_endpoint) == 2
