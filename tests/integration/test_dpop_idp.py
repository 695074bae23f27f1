"""DPoP (RFC 9449) and protected resource discovery (RFC 9728, RFC 8707) against the real IdP (node oidc-provider)
and the test resource server (tests/resource_server.py), which validates proofs for real.

Covered: a DPoP-bound token from the token endpoint (§5, cnf.jkt §6.1), the token endpoint's nonce challenge
(§8), proofs at a resource through the requests and httpx integrations (§7.1) with the resource's nonce
challenge (§9), a refresh of a DPoP-bound refresh token by a second process with the stored key (§5), a missing
key (the token is not sent), a proof for another URL (§4.3 htu), a replayed proof (§11.1), discovery from a 401
(RFC 9728 §5.1) and metadata naming another resource (§3.3), and no key or proof in logs, reprs or token files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from counting_session import CountingSession
from idp_harness import CC_CLIENT, DEVICE_PUBLIC, DPOP_REQUIRED, RESOURCE_SERVER, LocalIdP, idp_dpop_nonce
from resource_server import ResourceServer, resource_server
from tokensmith import (
    AsyncTokenClient,
    BrowserPrompt,
    DevicePrompt,
    DPoPKey,
    DPoPKeyMissing,
    FileStore,
    LoginRequired,
    NoClientAuth,
    ResourceMetadataError,
    StoreError,
    TokenClient,
    Transport,
)
from tokensmith.integrations.httpx_auth import TokenAuth as HttpxAuth
from tokensmith.integrations.requests_auth import TokenAuth

__all__ = ["idp_dpop_nonce", "resource_server"]

pytestmark = pytest.mark.idp

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "dpop_refresh_worker.py"
CC_WORKER = WORKER.with_name("dpop_cc_worker.py")
DEVICE_SCOPE = "openid offline_access"


def _introspect(idp: LocalIdP, token: str) -> dict[str, Any]:
    assert RESOURCE_SERVER.client_secret is not None
    answer: dict[str, Any] = requests.post(
        idp.introspection_endpoint,
        data={"token": token},
        auth=(RESOURCE_SERVER.client_id, RESOURCE_SERVER.client_secret),
        timeout=10,
    ).json()
    return answer


def _token_posts(session: CountingSession, idp: LocalIdP) -> int:
    return sum(1 for post in session.posts if post.url == idp.token_endpoint)


def _rs_client(idp: LocalIdP, rs: ResourceServer, **kwargs: Any) -> TokenClient:
    return TokenClient.from_issuer(
        idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, resource=rs.resource, scope="api:read", **kwargs
    )


def _async_rs_client(idp: LocalIdP, rs: ResourceServer, **kwargs: Any) -> AsyncTokenClient:
    return AsyncTokenClient.from_issuer(
        idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, resource=rs.resource, scope="api:read", **kwargs
    )


def _device_login(idp: LocalIdP, store: FileStore, **kwargs: Any) -> TokenClient:
    def on_prompt(prompt: DevicePrompt) -> None:
        threading.Thread(target=idp.approve, args=(prompt.user_code,), daemon=True).start()

    client = TokenClient(
        idp.token_endpoint,
        auth=NoClientAuth(DEVICE_PUBLIC.client_id),
        device_authorization_endpoint=idp.device_authorization_endpoint,
        grant="device_code",
        scope=DEVICE_SCOPE,
        store=store,
        on_prompt=on_prompt,
        background_refresh=False,
        **kwargs,
    )
    client.login()
    return client


# --- the token endpoint -------------------------------------------------------------------------------------


def test_token_endpoint_issues_a_dpop_bound_token(idp: LocalIdP) -> None:
    """RFC 9449 §5: with a proof the token is ``token_type=DPoP``; §6.1: its cnf.jkt is our key's RFC 7638
    thumbprint, which the Token records (C7: DPoP accepted because we asked for it). A client registered with
    dpop_bound_access_tokens gets nothing without a proof."""
    key = DPoPKey.generate()
    client = TokenClient.from_issuer(idp.issuer, DPOP_REQUIRED.client_id, DPOP_REQUIRED.client_secret, dpop=key)
    token = client.get_token()
    assert token.token_type == "DPoP" and token.is_dpop and token.authorization.startswith("DPoP ")
    assert token.jkt == key.thumbprint
    assert _introspect(idp, token.access_token)["cnf"] == {"jkt": key.thumbprint}

    plain = TokenClient.from_issuer(idp.issuer, DPOP_REQUIRED.client_id, DPOP_REQUIRED.client_secret)
    with pytest.raises(Exception, match="invalid_grant"):
        plain.get_token()


def test_token_endpoint_nonce_challenge_is_answered_once(idp_dpop_nonce: LocalIdP) -> None:
    """RFC 9449 §8: 400 use_dpop_nonce + DPoP-Nonce → one retry with the nonce; the nonce is remembered (§8.1),
    so the next token request carries it at once (one POST, not two)."""
    idp = idp_dpop_nonce
    session = CountingSession()
    client = TokenClient.from_issuer(
        idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, dpop=True, transport=Transport(session)
    )
    token = client.get_token()
    assert token.is_dpop and _introspect(idp, token.access_token)["cnf"]["jkt"] == token.jkt
    assert [p.status for p in session.posts if p.url == idp.token_endpoint] == [400, 200]
    client.fetch_client_credentials()
    assert [p.status for p in session.posts if p.url == idp.token_endpoint][2:] == [200]


def test_async_client_gets_a_dpop_token_through_the_nonce_challenge(idp_dpop_nonce: LocalIdP) -> None:
    """RFC 9449 §8 with the async driver: the same flows, the same one retry."""

    async def main() -> str | None:
        async with AsyncTokenClient.from_issuer(
            idp_dpop_nonce.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, dpop=True
        ) as client:
            token = await client.get_token()
            assert token.is_dpop
            return token.jkt

    jkt = asyncio.run(main())
    assert jkt is not None


# --- at the resource ----------------------------------------------------------------------------------------


def test_requests_integration_sends_dpop_with_ath(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9449 §7.1: ``Authorization: DPoP <token>`` + a proof with htm/htu (no query, §4.2) and ath; the
    resource verifies the signature, the claims and cnf.jkt (introspection)."""
    client = _rs_client(idp, resource_server, dpop=True)
    session = requests.Session()
    session.auth = TokenAuth(client)
    response = session.get(resource_server.resource + "/items?page=2#top")
    assert response.status_code == 200, resource_server.events
    response = session.post(resource_server.resource + "/items", data=b"x")
    assert response.status_code == 200, resource_server.events
    assert resource_server.events == ["ok: dpop", "ok: dpop"]
    first, second = (r["DPoP"] for r in resource_server.received)
    assert first != second  # a fresh proof per request (new jti)


def test_requests_integration_answers_the_resource_nonce_challenge(
    idp: LocalIdP, resource_server: ResourceServer
) -> None:
    """RFC 9449 §9: 401 ``DPoP error="use_dpop_nonce"`` + DPoP-Nonce → the same request once more with a proof
    carrying the nonce; the nonce is remembered for that origin, so the next request needs no challenge."""
    resource_server.require_nonce = True
    client = _rs_client(idp, resource_server, dpop=True)
    response = requests.get(resource_server.resource, auth=TokenAuth(client))
    assert response.status_code == 200 and len(response.history) == 1
    assert resource_server.events == ["asked for a nonce", "ok: dpop"]
    assert client.stats.token_requests == 1  # the nonce retry did not renew the token
    resource_server.events.clear()
    assert requests.get(resource_server.resource, auth=TokenAuth(client)).status_code == 200
    assert resource_server.events == ["ok: dpop"]


def test_httpx_integration_with_resource_nonce_sync_and_async(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9449 §7.1 and §9 through the httpx handler, with a TokenClient and with an AsyncTokenClient."""
    resource_server.require_nonce = True
    client = _rs_client(idp, resource_server, dpop=True)
    with httpx.Client(auth=HttpxAuth(client)) as http:
        assert http.get(resource_server.resource + "/a?q=1").status_code == 200
        assert http.post(resource_server.resource + "/b", content=b"body").status_code == 200
    assert resource_server.events == ["asked for a nonce", "ok: dpop", "ok: dpop"]

    async def main() -> list[int]:
        async with (
            _async_rs_client(idp, resource_server, dpop=True) as aclient,
            httpx.AsyncClient(auth=HttpxAuth(aclient)) as http,
        ):
            return [(await http.get(resource_server.resource)).status_code for _ in range(2)]

    resource_server.events.clear()
    assert asyncio.run(main()) == [200, 200]
    assert resource_server.events == ["asked for a nonce", "ok: dpop", "ok: dpop"]


@pytest.mark.parametrize(
    ("status", "method", "method_after"), [(302, "GET", "GET"), (307, "POST", "POST"), (303, "POST", "GET")]
)
def test_requests_integration_signs_a_same_origin_redirect_for_where_it_goes(
    idp: LocalIdP, resource_server: ResourceServer, status: int, method: str, method_after: str
) -> None:
    """RFC 9449 §4.2: a proof names one method and URL. requests re-sends ``Authorization: DPoP`` to a redirect on
    the same origin (a trailing-slash move, a 307 for a POST); the redirect carries a proof made for its own
    method and URL, not the first request's (refused as an htu mismatch) nor none at all."""
    client = _rs_client(idp, resource_server, dpop=True)
    body = b"x" if method == "POST" else None
    response = requests.request(method, f"{resource_server.base}/redirect/{status}", data=body, auth=TokenAuth(client))
    assert response.status_code == 200, resource_server.events
    assert response.json()["method"] == method_after
    assert resource_server.events == [f"redirected ({status})", "ok: dpop"]
    assert client.stats.token_requests == 1


def test_httpx_integration_after_a_same_origin_redirect_signs_for_where_it_went(
    idp: LocalIdP, resource_server: ResourceServer
) -> None:
    """httpx follows a redirect inside the client, after the auth flow set the proof for the first URL (an auth
    flow never sees the redirect before it is sent): the target refuses that proof (htu), and the flow re-sends,
    once, to where it was redirected with a proof for that URL; no new token (the token was fine)."""
    client = _rs_client(idp, resource_server, dpop=True)
    with httpx.Client(auth=HttpxAuth(client), follow_redirects=True) as http:
        response = http.post(f"{resource_server.base}/redirect/307", content=b"body")
    assert response.status_code == 200 and response.json()["method"] == "POST", resource_server.events
    assert resource_server.events == ["redirected (307)", "refused: htu mismatch", "ok: dpop"]
    assert client.stats.token_requests == 1

    async def main() -> int:
        async with (
            _async_rs_client(idp, resource_server, dpop=True) as aclient,
            httpx.AsyncClient(auth=HttpxAuth(aclient), follow_redirects=True) as http,
        ):
            answer = await http.get(f"{resource_server.base}/redirect/302")
            assert aclient.stats.token_requests == 1
            return answer.status_code

    resource_server.events.clear()
    assert asyncio.run(main()) == 200
    assert resource_server.events == ["redirected (302)", "refused: htu mismatch", "ok: dpop"]


def test_a_proof_for_another_url_is_refused(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9449 §4.3 (htu): a proof made for one URL does not authorise a request to another."""
    client = _rs_client(idp, resource_server, dpop=True)
    token = client.get_token()
    headers = client.dpop_headers("GET", resource_server.resource + "/elsewhere", token)
    response = requests.get(resource_server.resource + "/items", headers=headers)
    assert response.status_code == 401 and 'error="invalid_dpop_proof"' in response.headers["WWW-Authenticate"]
    assert resource_server.events == ["refused: htu mismatch"]


def test_a_replayed_proof_is_refused(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9449 §11.1: the resource remembers jti; the same proof twice is a replay. ``dpop_headers`` makes a
    fresh proof each call, so a client that asks again is fine."""
    client = _rs_client(idp, resource_server, dpop=True)
    token = client.get_token()
    headers = client.dpop_headers("GET", resource_server.resource, token)
    assert requests.get(resource_server.resource, headers=headers).status_code == 200
    assert requests.get(resource_server.resource, headers=headers).status_code == 401
    assert requests.get(resource_server.resource, headers=client.dpop_headers("GET", resource_server.resource, token))
    assert resource_server.events == ["ok: dpop", "refused: a replayed proof (jti seen before)", "ok: dpop"]


def test_a_dpop_token_is_never_sent_as_bearer(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9449 §7.1: a bound token presented as Bearer is refused by the resource (the reason the client must
    never downgrade one)."""
    client = _rs_client(idp, resource_server, dpop=True)
    token = client.get_token()
    response = requests.get(resource_server.resource, headers={"Authorization": f"Bearer {token.access_token}"})
    assert response.status_code == 401
    assert resource_server.events == ["refused: a DPoP-bound token presented as a Bearer token"]


def test_a_revoked_dpop_token_is_renewed_once_at_the_resource(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9449 §7.1: a resource refusing the token itself (revoked, expired) answers ``DPoP error="invalid_token"``
    (``invalid_dpop_proof`` is for the proof); the integration renews once and re-sends once, with a new proof."""
    from tokensmith._protocol.dpop import is_dpop_invalid_token
    from tokensmith.revocation import revoke

    client = _rs_client(idp, resource_server, dpop=True)
    first = client.get_token()
    revoke(client, first.access_token, token_type_hint="access_token")
    response = requests.get(resource_server.resource, auth=TokenAuth(client))
    assert response.status_code == 200, resource_server.events
    assert resource_server.events == ["refused: an inactive token", "ok: dpop"]
    assert is_dpop_invalid_token(401, response.history[0].headers["WWW-Authenticate"])
    assert client.get_token().access_token != first.access_token


# --- the key across processes -------------------------------------------------------------------------------


def test_second_process_refreshes_with_the_persisted_key(idp: LocalIdP, tmp_path: Path) -> None:
    """RFC 9449 §5: a public client's refresh token is bound to the DPoP key, so a new process can renew only
    with the same key: the store keeps it in its own 0600 file (``<key>.dpop``), apart from the token file."""
    store = FileStore(tmp_path)
    client = _device_login(idp, store, dpop=True)
    first = client.get_token()
    assert first.is_dpop and first.refresh_token and first.jkt is not None
    key_file = Path(store.directory) / f"{client.cache_key}.dpop"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private_d = json.loads(key_file.read_text())["d"]
    token_file = Path(store.path_for(client.cache_key)).read_bytes()
    assert private_d.encode() not in token_file and b'"jkt"' in token_file

    done = subprocess.run(
        [sys.executable, str(WORKER), idp.token_endpoint, DEVICE_PUBLIC.client_id, DEVICE_SCOPE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"token_type": "DPoP", "jkt": first.jkt, "refreshes": 1}, done.stderr
    renewed = store.load(client.cache_key)
    assert renewed is not None and renewed.refresh_token != first.refresh_token  # rotated by the other process
    assert _introspect(idp, renewed.access_token)["cnf"]["jkt"] == first.jkt


class _FullDiskForKeys(FileStore):
    """A FileStore on a disk that is full for the DPoP key file until ``room()`` (ENOSPC, as StoreError)."""

    full = True

    def save_key(self, key: str, jwk: str) -> None:
        if self.full:
            raise StoreError("No space left on device (ENOSPC) writing the DPoP key file")
        super().save_key(key, jwk)


def test_a_key_the_disk_refused_is_stored_before_its_token_and_nothing_is_lost(
    idp: LocalIdP, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk is full when the DPoP key is made: the login still succeeds and its token is used, but the token
    is not stored without its key (a DPoP-bound refresh token without the key is lost to the next process).
    Once there is room, close() stores the key, then the token; a new process refreshes with them."""
    store = _FullDiskForKeys(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tokensmith"):
        client = _device_login(idp, store, dpop=True)
    token = client.get_token()
    assert token.is_dpop and token.refresh_token and client.stats.save_failures == 1
    assert store.load(client.cache_key) is None  # not stored without its key
    assert any("DPoP key" in r.getMessage() for r in caplog.records)
    store.full = False
    client.close()  # a token that could not be stored is saved again at close
    assert store.load(client.cache_key) == token and store.load_key(client.cache_key) is not None
    done = subprocess.run(
        [sys.executable, str(WORKER), idp.token_endpoint, DEVICE_PUBLIC.client_id, DEVICE_SCOPE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"token_type": "DPoP", "jkt": token.jkt, "refreshes": 1}, done.stderr


def test_processes_starting_together_make_one_key_and_one_token(idp: LocalIdP, tmp_path: Path) -> None:
    """Six processes, one empty FileStore, dpop=True: the renewal leader makes the key under the store's lock and
    stores it; the others adopt its token and, through the token's jkt, its key (one token request in all, one
    key, the one in the ``.dpop`` file)."""
    store_dir, go = tmp_path / "store", tmp_path / "go"
    assert CC_CLIENT.client_secret is not None
    argv = [sys.executable, str(CC_WORKER), idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret]
    procs = [
        subprocess.Popen([*argv, str(store_dir), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    time.sleep(1.5)  # every interpreter started and waiting at the line
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r.get("error") for r in results] == [None] * 6
    assert sum(r["client_credentials"] for r in results) == 1 and sum(r["store_hits"] for r in results) == 5
    assert len({r["access_sha"] for r in results}) == 1 and {r["token_type"] for r in results} == {"DPoP"}
    (jkt,) = {r["jkt"] for r in results}
    (key_file,) = store_dir.glob("*.dpop")
    assert DPoPKey.from_jwk(key_file.read_text()).thumbprint == jkt


def test_a_missing_key_makes_the_stored_token_unusable(idp: LocalIdP, tmp_path: Path) -> None:
    """A DPoP-bound token whose key is gone is not sent anywhere (not as Bearer, not its refresh token): the
    caller gets DPoPKeyMissing (a LoginRequired), and no request reaches the token endpoint."""
    store = FileStore(tmp_path)
    client = _device_login(idp, store, dpop=True)
    assert store.delete_key(client.cache_key)
    session = CountingSession()
    fresh = TokenClient(
        idp.token_endpoint,
        auth=NoClientAuth(DEVICE_PUBLIC.client_id),
        grant="device_code",
        scope=DEVICE_SCOPE,
        store=store,
        dpop=True,
        transport=Transport(session),
    )
    with pytest.raises(DPoPKeyMissing, match="DPoP key"):
        fresh.get_token()
    assert _token_posts(session, idp) == 0
    # A client without DPoP keeps its tokens under another key (RFC 9449 §5: a bound token is another token): it
    # never sees the bound one, so cannot send it as Bearer; it needs its own login.
    plain = TokenClient(
        idp.token_endpoint, auth=NoClientAuth(DEVICE_PUBLIC.client_id), grant="device_code", scope=DEVICE_SCOPE,
        store=store, transport=Transport(session),
    )  # fmt: skip
    assert plain.cache_key != fresh.cache_key
    with pytest.raises(LoginRequired) as raised:
        plain.get_token()
    assert not isinstance(raised.value, DPoPKeyMissing)
    assert _token_posts(session, idp) == 0


def test_another_key_makes_client_credentials_fetch_a_new_token(idp: LocalIdP, tmp_path: Path) -> None:
    """The stored token's jkt names another key: for client credentials that simply means a new grant, with
    this client's key (the old token is not used)."""
    store = FileStore(tmp_path)
    first = TokenClient.from_issuer(idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, dpop=True, store=store)
    old = first.get_token()
    other = DPoPKey.generate()
    second = TokenClient.from_issuer(idp.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, dpop=other, store=store)
    new = second.get_token()
    assert new.access_token != old.access_token and new.jkt == other.thumbprint
    assert second.stats.client_credentials == 1


# --- RFC 9728 discovery ------------------------------------------------------------------------------------


def test_discovery_from_a_401(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9728 §5.1: the 401's resource_metadata is fetched (same origin), §3.3 resource checked, the first
    authorization server discovered (RFC 8414/OIDC), tokens requested with resource= (RFC 8707); the resource
    requires DPoP-bound tokens (§2), so DPoP is turned on without being asked."""
    resource_server.require_dpop = True
    first = requests.get(resource_server.resource)
    assert first.status_code == 401 and "resource_metadata=" in first.headers["WWW-Authenticate"]
    client = TokenClient.for_resource(
        resource_server.resource,
        CC_CLIENT.client_id,
        CC_CLIENT.client_secret,
        www_authenticate=first.headers["WWW-Authenticate"],
        scope="api:read",
    )
    assert client.issuer == idp.issuer and client.resource == (resource_server.resource,)
    assert client.resource_metadata is not None and client.resource_metadata.dpop_bound_access_tokens_required
    response = requests.get(resource_server.resource, auth=TokenAuth(client))
    assert response.status_code == 200
    assert resource_server.events == ["no credentials", "ok: dpop"]
    assert _introspect(idp, client.get_token().access_token)["aud"] == resource_server.resource


def test_discovery_from_the_resource_url_async(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9728 §3.1: the well-known URL with the resource's path inserted; a Bearer resource stays Bearer."""

    async def main() -> int:
        client = await AsyncTokenClient.for_resource(
            resource_server.resource, CC_CLIENT.client_id, CC_CLIENT.client_secret, scope="api:read"
        )
        async with client, httpx.AsyncClient(auth=HttpxAuth(client)) as http:
            token = await client.get_token()
            assert token.token_type.lower() == "bearer" and token.jkt is None
            return (await http.get(resource_server.resource)).status_code

    assert asyncio.run(main()) == 200
    assert resource_server.events == ["ok: bearer"]


def test_metadata_for_another_resource_is_refused(idp: LocalIdP, resource_server: ResourceServer) -> None:
    """RFC 9728 §3.3: a document whose resource is not the one asked about is not used at all (no AS
    discovery, no token request)."""
    resource_server.metadata_resource = "http://127.0.0.1:9/protected"
    session = CountingSession()
    with pytest.raises(ResourceMetadataError, match=r"§3\.3"):
        TokenClient.for_resource(
            resource_server.resource, CC_CLIENT.client_id, CC_CLIENT.client_secret, transport=Transport(session)
        )
    assert session.posts == []


def test_metadata_on_another_origin_is_not_followed(resource_server: ResourceServer) -> None:
    """RFC 9728 §7.7: a challenge pointing at another origin's metadata is refused before any request."""
    challenge = 'Bearer resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource/protected"'
    with pytest.raises(ResourceMetadataError, match="origin"):
        TokenClient.for_resource(resource_server.resource, CC_CLIENT.client_id, www_authenticate=challenge)
    with pytest.raises(ResourceMetadataError, match="refused"):
        TokenClient.for_resource(
            resource_server.resource,
            CC_CLIENT.client_id,
            www_authenticate='Bearer resource_metadata="http://evil.example/.well-known/oauth-protected-resource"',
        )


# --- secrets stay secret ------------------------------------------------------------------------------------


def test_no_key_or_proof_in_logs_reprs_or_errors(
    idp_dpop_nonce: LocalIdP, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """C10 for DPoP: the private key and the proofs appear nowhere but on the wire and in the key's own slot."""
    caplog.set_level(logging.DEBUG)
    store = FileStore(tmp_path)
    client = TokenClient.from_issuer(
        idp_dpop_nonce.issuer, CC_CLIENT.client_id, CC_CLIENT.client_secret, dpop=True, store=store
    )
    token = client.get_token()
    stored_key = store.load_key(client.cache_key)
    assert stored_key is not None
    private = json.loads(stored_key)["d"]
    key = DPoPKey.from_jwk(stored_key)
    assert key.thumbprint == token.jkt
    proof = client.dpop_headers("GET", "https://rs.example/x", token)["DPoP"]
    shown = " ".join([caplog.text, repr(client), repr(token), repr(key), str(token.to_dict())])
    assert private not in shown and proof not in shown and proof.split(".")[2] not in shown
    others = [p for p in Path(store.directory).iterdir() if p.is_file() and p.suffix != ".dpop"]
    assert others and all(private.encode() not in p.read_bytes() for p in others)
    assert "d" not in key.public_jwk
    with pytest.raises(TypeError):
        pickle.dumps(key)


# --- more grants, both nonces at once -----------------------------------------------------------------------


def test_browser_login_code_exchange_and_refresh_are_dpop_bound(idp: LocalIdP, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 9449 §5 for the authorization code grant: the browser login's code exchange carries a proof (the one
    token request made outside the engine's flows), so the token and the public client's refresh token are bound;
    the refresh with the same key keeps the binding."""
    from idp_harness import BROWSER_PUBLIC

    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.setenv("BROWSER", "true")  # "a browser can be opened", which opens nothing: the test plays it

    def on_prompt(prompt: object) -> None:
        assert isinstance(prompt, BrowserPrompt)
        threading.Thread(target=idp.authorize, args=(prompt.url,), daemon=True).start()

    client = TokenClient.from_issuer(
        idp.issuer, BROWSER_PUBLIC.client_id, scope=DEVICE_SCOPE, login_flow="browser", on_prompt=on_prompt, dpop=True
    )
    token = client.get_token(interactive=True)
    assert token.is_dpop and _introspect(idp, token.access_token)["cnf"]["jkt"] == token.jkt
    renewed = client.refresh()
    assert renewed.is_dpop and renewed.jkt == token.jkt and renewed.refresh_token != token.refresh_token


def test_nonce_challenges_at_the_token_endpoint_and_the_resource_together(idp_dpop_nonce: LocalIdP) -> None:
    """RFC 9449 §8 and §9 in one request: the token endpoint's nonce (400) and the resource's (401), each answered
    once, each remembered for its own origin."""
    idp = idp_dpop_nonce
    assert RESOURCE_SERVER.client_secret is not None
    rs = ResourceServer(
        idp.issuer,
        idp.introspection_endpoint,
        (RESOURCE_SERVER.client_id, RESOURCE_SERVER.client_secret),
        require_nonce=True,
    ).start()
    try:
        session = CountingSession()
        client = TokenClient.from_issuer(
            idp.issuer,
            CC_CLIENT.client_id,
            CC_CLIENT.client_secret,
            resource=rs.resource,
            scope="api:read",
            dpop=True,
            transport=Transport(session),
        )
        assert requests.get(rs.resource, auth=TokenAuth(client)).status_code == 200
        assert [p.status for p in session.posts if p.url == idp.token_endpoint] == [400, 200]
        assert rs.events == ["asked for a nonce", "ok: dpop"]
        client.fetch_client_credentials()
        assert requests.get(rs.resource, auth=TokenAuth(client)).status_code == 200
        assert [p.status for p in session.posts if p.url == idp.token_endpoint] == [400, 200, 200]
        assert rs.events == ["asked for a nonce", "ok: dpop", "ok: dpop"]
    finally:
        rs.stop()


def test_private_key_jwt_with_dpop_nonce_sends_a_new_assertion_on_the_retry(idp_dpop_nonce: LocalIdP) -> None:
    """RFC 9449 §8 meets RFC 7523 §3: the nonce retry is a new request, so it carries a new client assertion (a
    replayed jti would be refused as invalid_client); the key that signs assertions and the DPoP key are unrelated."""
    from idp_harness import PKJWT_EC

    idp = idp_dpop_nonce
    session = CountingSession()
    client = TokenClient.from_issuer(
        idp.issuer,
        PKJWT_EC.client_id,
        private_key=idp.private_key_pem(PKJWT_EC.client_id),
        scope="api:read",
        dpop=True,
        transport=Transport(session),
    )
    token = client.get_token()
    assert token.is_dpop and _introspect(idp, token.access_token)["cnf"]["jkt"] == token.jkt
    assert [p.status for p in session.posts if p.url == idp.token_endpoint] == [400, 200]
