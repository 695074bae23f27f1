"""The drop-in ``token_client`` on a refresh, as flytekit's ``DeviceCodeAuthenticator`` uses it: what it returns
becomes the stored credentials, and any ``AuthenticationError`` makes it delete them and start a device login.
So a refresh must hand back a refresh token that still works (RFC 6749 §6, C9), and an answer that is not a
verdict on the credentials (a rate limit, ``server_error``, ``temporarily_unavailable``) must not be an
``AuthenticationError`` (IDP-QUIRKS, "What callers of the original rely on")."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import requests

import tokensmith
from fault_server import FaultServer, Reply
from tokensmith import token_client as tc

#: Auth0's answer to a client over its rate limit.
RATE_LIMITED = Reply(
    status=429,
    json={"error": "too_many_requests", "error_description": "Global limit has been reached"},
    headers={"Retry-After": "7"},
)


def _refresh(server: FaultServer) -> tuple[str, str | None, int | None]:
    return tc.get_token(
        server.url("/token"), client_id="c", grant_type=tc.GrantType.REFRESH_TOKEN, refresh_token="rt-old-123"
    )


@pytest.mark.parametrize("sent", [None, ""], ids=["absent", "empty"])
def test_a_refresh_without_a_new_refresh_token_returns_the_one_that_was_sent(
    fault_server: FaultServer, sent: str | None
) -> None:
    """RFC 6749 §6: "If none is returned, keep the old one." flytekit stores whatever comes back; None would
    lose the still-valid refresh token and force a device login at the next refresh."""
    body: dict[str, object] = {"access_token": "at-2", "token_type": "Bearer", "expires_in": 60}
    if sent is not None:
        body["refresh_token"] = sent
    fault_server.script("/token", Reply(json=body))
    assert _refresh(fault_server) == ("at-2", "rt-old-123", 60)


def test_a_rotated_refresh_token_is_returned_and_other_grants_get_none(fault_server: FaultServer) -> None:
    fault_server.script(
        "/token",
        Reply(json={"access_token": "at-2", "token_type": "Bearer", "refresh_token": "rt-new-456"}),
        Reply(json={"access_token": "at-3", "token_type": "Bearer"}),
    )
    assert _refresh(fault_server) == ("at-2", "rt-new-456", None)
    assert tc.get_token(fault_server.url("/token"), authorization_header="Basic eDp5") == ("at-3", None, None)


@pytest.mark.parametrize(
    "reply",
    [
        RATE_LIMITED,
        Reply(status=503, json={"error": "temporarily_unavailable"}),
        Reply(status=500, json={"error": "server_error", "error_description": "try later"}),
        Reply(status=502, json={"error": "bad_gateway"}),
    ],
    ids=["429-too_many_requests", "503-temporarily_unavailable", "500-server_error", "502-unregistered-code"],
)
def test_a_busy_server_is_not_a_verdict_on_the_refresh_token(fault_server: FaultServer, reply: Reply) -> None:
    """Not an ``AuthenticationError`` (that would make flytekit delete the credentials), but a ``requests``
    ``HTTPError`` as for a 5xx or 429 without an OAuth body, still typed and carrying what the server said."""
    fault_server.script("/token", reply)
    with pytest.raises(requests.HTTPError) as caught:
        _refresh(fault_server)
    error = caught.value
    assert not isinstance(error, tokensmith.AuthenticationError | tokensmith.AuthenticationPending)
    assert isinstance(error, tokensmith.TokensmithError) and error.transient
    assert getattr(error, "status_code", None) == reply.status
    assert getattr(error, "error", None) == json.loads(reply.payload())["error"]
    if reply is RATE_LIMITED:
        assert error.retry_after == 7
        assert getattr(error, "error_description", None) == "Global limit has been reached"


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        (Reply(status=400, json={"error": "invalid_grant"}), tokensmith.InvalidGrant),
        (Reply(status=503, json={"error": "invalid_grant"}), tokensmith.InvalidGrant),
        (Reply(status=401, json={"error": "invalid_client"}), tokensmith.InvalidClient),
        (Reply(status=400, json={"error": "some_rejection"}), tokensmith.OAuthError),
    ],
)
def test_a_verdict_stays_an_authentication_error(
    fault_server: FaultServer, reply: Reply, cls: type[tokensmith.OAuthError]
) -> None:
    """A registered rejection code is the server's verdict whatever the status; so is an unknown code on a 4xx."""
    fault_server.script("/token", reply)
    with pytest.raises(cls) as caught:
        _refresh(fault_server)
    assert isinstance(caught.value, tokensmith.AuthenticationError)
    assert not isinstance(caught.value, requests.RequestException)


@pytest.mark.parametrize("status", [302, 303, 307, 308])
def test_a_redirect_on_refresh_is_not_a_verdict_on_the_refresh_token(fault_server: FaultServer, status: int) -> None:
    """A proxy or an SSO gateway that answers the refresh with a redirect to its login page has not judged the
    refresh token. The seed followed the redirect and failed on the HTML page with requests' ``JSONDecodeError``,
    so flytekit's ``DeviceCodeAuthenticator`` kept the credentials; an ``AuthenticationError`` here makes it delete
    them and start a device login. The redirect is still not followed (C27: it would re-send the refresh token)."""
    fault_server.script("/token", Reply(status=status, headers={"Location": fault_server.url("/sso")}))
    with pytest.raises(requests.RequestException) as caught:
        _refresh(fault_server)
    error = caught.value
    assert isinstance(error, tokensmith.UnexpectedRedirect) and error.status_code == status
    assert not isinstance(error, tokensmith.AuthenticationError | tokensmith.AuthenticationPending)
    assert "rt-old-123" not in str(error)
    assert fault_server.count("/sso") == 0


FLYTEKIT_REFRESH = """
import json, sys
import tokensmith.integrations.flytekit as bridge
bridge.install()
from unittest.mock import patch
import requests
from flytekit.clients.auth.authenticator import ClientConfig, DeviceCodeAuthenticator, StaticClientConfigStore
from flytekit.clients.auth.keyring import Credentials
from flytekit.clients.auth.token_client import DeviceCodeResponse

token_endpoint = sys.argv[1]
cfg = StaticClientConfigStore(ClientConfig(token_endpoint=token_endpoint, authorization_endpoint="a",
    redirect_uri="r", client_id="c", device_authorization_endpoint="https://idp.example/device"))
results = []
for _ in range(2):
    with patch("flytekit.clients.auth.authenticator.KeyringStore") as store, \\
         patch("flytekit.clients.auth.token_client.get_device_code") as get_device_code, \\
         patch("flytekit.clients.auth.token_client.poll_token_endpoint") as poll:
        store.retrieve.return_value = Credentials("old-access", "rt-old-123", "dns:///flyte")
        get_device_code.return_value = DeviceCodeResponse("d", "U", "https://v", 600, 5)
        poll.return_value = ("login-access", "login-refresh", 60)
        authn = DeviceCodeAuthenticator("dns:///flyte", cfg)
        try:
            authn.refresh_credentials()
            raised = None
        except Exception as e:
            raised = [type(e).__name__, isinstance(e, requests.HTTPError)]
        results.append({"raised": raised, "device_logins": get_device_code.call_count,
                        "deleted": store.delete.call_count, "refresh_token": authn._creds.refresh_token})
print(json.dumps(results))
"""


def test_flytekit_keeps_its_refresh_token_through_a_plain_refresh_and_a_rate_limit(fault_server: FaultServer) -> None:
    """flytekit's own ``DeviceCodeAuthenticator`` on tokensmith (the bridge), against a server that refreshes
    without rotating, then rate-limits: neither costs the person a device login, nor the stored credentials."""
    pytest.importorskip("flytekit", reason="flytekit is not installed (it is in the dev extra)")
    fault_server.script(
        "/token", Reply(json={"access_token": "at-2", "token_type": "Bearer", "expires_in": 60}), RATE_LIMITED
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FLYTEKIT_REFRESH), fault_server.url("/token")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    plain, limited = json.loads(done.stdout.strip().splitlines()[-1])
    assert plain == {"raised": None, "device_logins": 0, "deleted": 0, "refresh_token": "rt-old-123"}
    assert limited == {
        "raised": ["InvalidResponse", True],
        "device_logins": 0,
        "deleted": 0,
        "refresh_token": "rt-old-123",
    }
    assert fault_server.count("/token") == 2
