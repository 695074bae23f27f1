"""Smoke tests for the local test IdP (tests/idp) and its harness (tests/idp_harness.py).

These talk to the server with plain ``requests`` only, never through
tokensmith, so that a failure here points at the test infrastructure rather
than at the library. They also pin down the server behaviours that the
library's integration tests rely on.
"""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests

import idp_harness
from idp_harness import (
    API_RESOURCE,
    CC_CLIENT,
    CC_POST_CLIENT,
    DEVICE_CODE_GRANT,
    DEVICE_CONFIDENTIAL,
    DEVICE_PUBLIC,
    ODD_CLIENT,
    OTHER_API_RESOURCE,
    ClientInfo,
    IdPStartTimeout,
    LocalIdP,
)

pytestmark = pytest.mark.idp

DEVICE_SCOPE = "openid offline_access"


# --------------------------------------------------------------------------- helpers


def basic_auth(client: ClientInfo) -> str:
    """RFC 6749 §2.3.1: client_id and client_secret are each encoded with
    application/x-www-form-urlencoded (Appendix B), then joined by ':' and
    base64-encoded as in RFC 7617."""
    assert client.client_secret is not None
    user_pass = f"{quote_plus(client.client_id, safe='')}:{quote_plus(client.client_secret, safe='')}"
    return "Basic " + base64.b64encode(user_pass.encode("utf-8")).decode("ascii")


def raw_basic_auth(client: ClientInfo) -> str:
    """The common mistake: base64 of ``id:secret`` without form-encoding."""
    assert client.client_secret is not None
    return "Basic " + base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode("ascii")


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only
        yield session


def token_request(
    http: requests.Session, server: LocalIdP, data: dict[str, str], client: ClientInfo | None = None
) -> requests.Response:
    """POST to the token endpoint; confidential clients use HTTP Basic, public
    ones send ``client_id`` in the body (RFC 6749 §3.2.1)."""
    return _client_post(http, server.token_endpoint, data, client)


def _client_post(
    http: requests.Session, url: str, data: dict[str, str], client: ClientInfo | None
) -> requests.Response:
    headers = {"Accept": "application/json"}
    body = dict(data)
    if client is not None:
        if client.client_secret is None:
            body["client_id"] = client.client_id
        else:
            headers["Authorization"] = basic_auth(client)
    return http.post(url, data=body, headers=headers, timeout=10)


def device_authorization(http: requests.Session, server: LocalIdP, client: ClientInfo) -> dict[str, Any]:
    """RFC 8628 §3.1 device authorization request."""
    response = _client_post(http, server.device_authorization_endpoint, {"scope": DEVICE_SCOPE}, client)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def poll(http: requests.Session, server: LocalIdP, client: ClientInfo, device_code: str) -> requests.Response:
    """RFC 8628 §3.4 device access token request."""
    return token_request(http, server, {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code}, client)


def assert_error(response: requests.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text


def assert_bearer_token(body: dict[str, Any], expires_in: int = 3600) -> None:
    """RFC 6749 §5.1 successful token response."""
    assert isinstance(body.get("access_token"), str) and body["access_token"]
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == expires_in


# --------------------------------------------------------------------------- discovery


def test_discovery_lists_endpoints(idp: LocalIdP) -> None:
    """RFC 8414 §2 metadata (served at the OpenID path) names every endpoint
    we use, incl. RFC 8628 §4 device_authorization_endpoint, RFC 7009
    revocation_endpoint and RFC 7662 introspection_endpoint."""
    metadata = idp.discovery
    assert metadata["issuer"] == idp.issuer
    assert idp.issuer.startswith("http://127.0.0.1:")
    for name in (
        "token_endpoint",
        "device_authorization_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ):
        assert metadata[name].startswith(idp.issuer + "/"), name
    assert {"client_credentials", DEVICE_CODE_GRANT, "refresh_token"} <= set(metadata["grant_types_supported"])
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        metadata["token_endpoint_auth_methods_supported"]
    )


# --------------------------------------------------------------------------- client credentials


@pytest.mark.parametrize("client", [CC_CLIENT, ODD_CLIENT], ids=["cc-client", "odd-client"])
def test_client_credentials_basic_form_encoded(
    idp: LocalIdP,
    http: requests.Session,
    client: ClientInfo,
) -> None:
    """RFC 6749 §4.4 client credentials grant with §2.3.1 HTTP Basic
    authentication, id and secret form-encoded before base64."""
    response = token_request(http, idp, {"grant_type": "client_credentials"}, client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_bearer_token(body)
    assert "refresh_token" not in body  # RFC 6749 §4.4.3: SHOULD NOT be included


@pytest.mark.parametrize("client", [CC_CLIENT, ODD_CLIENT], ids=["cc-client", "odd-client"])
def test_client_credentials_basic_without_form_encoding_is_rejected(
    idp: LocalIdP,
    http: requests.Session,
    client: ClientInfo,
) -> None:
    """The server form-decodes both halves (RFC 6749 §2.3.1), so the raw
    ``id:secret`` of these clients fails with 401 invalid_client (§5.2)."""
    response = http.post(
        idp.token_endpoint,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": raw_basic_auth(client)},
        timeout=10,
    )
    assert_error(response, "invalid_client", status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_client_credentials_post(idp: LocalIdP, http: requests.Session) -> None:
    """RFC 6749 §2.3.1 credentials in the request body (client_secret_post)."""
    assert CC_POST_CLIENT.client_secret is not None
    response = http.post(
        idp.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": CC_POST_CLIENT.client_id,
            "client_secret": CC_POST_CLIENT.client_secret,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert_bearer_token(response.json())


def test_client_credentials_scope_resource_and_extra_params(
    idp: LocalIdP,
    http: requests.Session,
) -> None:
    """RFC 6749 §3.3 scope (echoed when granted, unknown scopes dropped),
    RFC 8707 §2 resource (an unknown one -> invalid_target) and an unknown
    ``audience`` parameter, which is ignored (RFC 6749 §3.2)."""
    grant = {"grant_type": "client_credentials"}

    response = token_request(http, idp, {**grant, "scope": "api:read"}, CC_CLIENT)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "api:read"

    response = token_request(http, idp, {**grant, "scope": "not-a-scope"}, CC_CLIENT)
    assert response.status_code == 200, response.text
    assert "scope" not in response.json()

    response = token_request(
        http, idp, {**grant, "resource": OTHER_API_RESOURCE, "scope": "other:read api:read"}, CC_CLIENT
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "other:read"

    response = token_request(http, idp, {**grant, "resource": "https://unknown.tokensmith.test/"}, CC_CLIENT)
    assert_error(response, "invalid_target")

    response = token_request(http, idp, {**grant, "audience": "https://anything.test/"}, CC_CLIENT)
    assert response.status_code == 200, response.text


def test_introspection_and_revocation(idp: LocalIdP, http: requests.Session) -> None:
    """RFC 7662 §2 introspection before and after RFC 7009 §2 revocation of
    an (opaque) client-credentials access token."""
    response = token_request(http, idp, {"grant_type": "client_credentials"}, CC_CLIENT)
    token = response.json()["access_token"]

    introspection = _client_post(http, idp.introspection_endpoint, {"token": token}, CC_CLIENT)
    assert introspection.status_code == 200, introspection.text
    assert introspection.json()["active"] is True
    assert introspection.json()["client_id"] == CC_CLIENT.client_id
    assert introspection.json()["aud"] == API_RESOURCE

    revocation = _client_post(
        http, idp.revocation_endpoint, {"token": token, "token_type_hint": "access_token"}, CC_CLIENT
    )
    assert revocation.status_code == 200, revocation.text

    introspection = _client_post(http, idp.introspection_endpoint, {"token": token}, CC_CLIENT)
    assert introspection.json() == {"active": False}


# --------------------------------------------------------------------------- device flow


def test_device_flow_public_client_approved(idp: LocalIdP, http: requests.Session) -> None:
    """RFC 8628 §3.1-§3.5: device authorization, authorization_pending while
    the user has not acted, then tokens (incl. a refresh token for
    ``offline_access``) once the user approves in the browser."""
    authorization = device_authorization(http, idp, DEVICE_PUBLIC)
    assert {"device_code", "user_code", "verification_uri", "expires_in"} <= authorization.keys()
    assert authorization["verification_uri"] == idp.verification_uri
    assert authorization["expires_in"] == 600
    assert "interval" not in authorization  # clients must default to 5 s (RFC 8628 §3.2)

    assert_error(poll(http, idp, DEVICE_PUBLIC, authorization["device_code"]), "authorization_pending")

    idp.approve(authorization["user_code"], login="alice")

    response = poll(http, idp, DEVICE_PUBLIC, authorization["device_code"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert_bearer_token(body)
    assert body["refresh_token"]
    assert body["id_token"]
    assert set(body["scope"].split()) == {"openid", "offline_access"}


def test_device_flow_denied(idp: LocalIdP, http: requests.Session) -> None:
    """RFC 8628 §3.5: the user declines -> access_denied."""
    authorization = device_authorization(http, idp, DEVICE_PUBLIC)
    idp.deny(authorization["user_code"], login="mallory")
    assert_error(poll(http, idp, DEVICE_PUBLIC, authorization["device_code"]), "access_denied")


def test_refresh_token_rotation(idp: LocalIdP, http: requests.Session) -> None:
    """RFC 6749 §6 refresh with rotation (RFC 9700 §4.14.2): each refresh
    returns a new refresh token, and replaying a used one is invalid_grant
    (RFC 6749 §5.2). The server treats the replay as theft and revokes the
    whole grant, so the newest refresh token dies as well."""
    authorization = device_authorization(http, idp, DEVICE_PUBLIC)
    idp.approve(authorization["user_code"])
    first = poll(http, idp, DEVICE_PUBLIC, authorization["device_code"]).json()

    response = token_request(
        http, idp, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, DEVICE_PUBLIC
    )
    assert response.status_code == 200, response.text
    second = response.json()
    assert_bearer_token(second)
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]

    replay = token_request(
        http, idp, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, DEVICE_PUBLIC
    )
    assert_error(replay, "invalid_grant")

    after_replay = token_request(
        http, idp, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}, DEVICE_PUBLIC
    )
    assert_error(after_replay, "invalid_grant")


def test_device_flow_confidential_client(idp: LocalIdP, http: requests.Session) -> None:
    """RFC 8628 §3.1/§3.4 with a confidential client authenticating by
    HTTP Basic (RFC 6749 §2.3.1) at both endpoints, then a refresh (§6)."""
    authorization = device_authorization(http, idp, DEVICE_CONFIDENTIAL)
    idp.approve(authorization["user_code"], login="bob")

    response = poll(http, idp, DEVICE_CONFIDENTIAL, authorization["device_code"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert_bearer_token(body)

    refreshed = token_request(
        http, idp, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, DEVICE_CONFIDENTIAL
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != body["refresh_token"]


def test_device_code_expires(idp_short_device_ttl: LocalIdP, http: requests.Session) -> None:
    """RFC 8628 §3.5: once the device code has expired, polling yields
    expired_token (the server is started with ``--device-ttl 3``)."""
    server = idp_short_device_ttl
    authorization = device_authorization(http, server, DEVICE_PUBLIC)
    # Counted from the answer, which the server sent after it made the code (counted from before the request, a
    # request that took the loaded server over a second to take in could reach it again before the code expired).
    answered = time.monotonic()
    assert authorization["expires_in"] == 3

    time.sleep(max(0.0, answered + authorization["expires_in"] + 1.2 - time.monotonic()))
    assert_error(poll(http, server, DEVICE_PUBLIC, authorization["device_code"]), "expired_token")


# --------------------------------------------------------------------------- harness start-up


def _stalling_node(tmp_path: Path, stalls: int) -> str:
    """A ``node`` stand-in whose first ``stalls`` starts hang silently (as a starved CI machine's once did)."""
    real_node = shutil.which("node")
    assert real_node is not None
    count = tmp_path / "starts"
    shim = tmp_path / "node"
    shim.write_text(
        "#!/bin/sh\n"
        f'echo x >> "{count}"\n'
        f'if [ "$(wc -l < "{count}")" -le {stalls} ]; then exec sleep 60; fi\n'
        f'exec "{real_node}" "$@"\n'
    )
    shim.chmod(0o755)
    return str(shim)


class _PatientAfterAStall(LocalIdP):
    """A stalled start is given up after the short ``startup_timeout``; the real start tried next gets the default
    wait (with 3 s for both, the test failed whenever a loaded machine took longer to start node for real)."""

    def _start_once(self, node: str) -> None:
        try:
            super()._start_once(node)
        except idp_harness.IdPStartTimeout:
            self.startup_timeout = idp_harness.DEFAULT_STARTUP_TIMEOUT
            raise


def test_a_start_that_stalls_is_tried_once_more_with_a_fresh_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    shim = _stalling_node(tmp_path, stalls=1)
    monkeypatch.setattr(idp_harness.shutil, "which", lambda name: shim)
    with _PatientAfterAStall(startup_timeout=1) as server:
        assert requests.get(server.discovery_url, timeout=10).json()["issuer"] == server.issuer
    assert (tmp_path / "starts").read_text().count("x") == 2
    assert "start attempt 1 stalled, retrying" in capfd.readouterr().err


def test_a_start_that_keeps_stalling_fails_with_a_typed_error_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shim = _stalling_node(tmp_path, stalls=2)
    monkeypatch.setattr(idp_harness.shutil, "which", lambda name: shim)
    server = LocalIdP(startup_timeout=1)
    with pytest.raises(IdPStartTimeout, match="did not print READY within 1 s"):
        server.start()
    assert not server.running
    assert (tmp_path / "starts").read_text().count("x") == 2
