"""Vendor quirks of the device flow, replayed by the fault server (IDP-QUIRKS; RFC 8628 §3.1-§3.5)."""

from __future__ import annotations

import base64

import requests

from fault_server import FaultServer, Reply
from tokensmith._protocol.client_auth import ClientSecretBasic, NoClientAuth
from tokensmith._transport import Transport
from tokensmith.device import DevicePrompt, device_login

TOKEN = {"access_token": "ya29.a0-token", "token_type": "Bearer", "expires_in": "3599", "refresh_token": "1//rt"}


def _login(server: FaultServer, auth: object, **kwargs: object) -> tuple[object, list[DevicePrompt]]:
    prompts: list[DevicePrompt] = []
    token = device_login(
        server.url("/device/code"),
        server.url("/token"),
        auth,  # type: ignore[arg-type]
        on_prompt=prompts.append,
        transport=Transport(requests.Session()),
        **kwargs,
    )  # type: ignore[arg-type]
    return token, prompts


def test_google_confidential_client_with_verification_url(fault_server: FaultServer) -> None:
    """Google: `verification_url`, and the device client must send its secret on both requests (C13, C16)."""
    fault_server.script(
        "/device/code",
        Reply(
            json={
                "device_code": "AH-1Ng",
                "user_code": "GQVQ-JKEC",
                "verification_url": "https://www.google.com/device",
                "expires_in": 1800,
                "interval": 0,
            }
        ),
    )
    fault_server.script("/token", Reply(status=428, json={"error": "authorization_pending"}), Reply(json=TOKEN))
    token, (prompt,) = _login(
        fault_server, ClientSecretBasic("123.apps.googleusercontent.com", "GOCSPX-s+cr/t"), scope="openid email"
    )
    assert prompt.verification_uri == "https://www.google.com/device" and prompt.user_code == "GQVQ-JKEC"
    assert token.access_token == "ya29.a0-token" and token.lifetime == 3599
    for rec in fault_server.recorded():
        user, _, password = base64.b64decode(rec.headers["authorization"].split()[1]).decode().partition(":")
        assert (user, password) == ("123.apps.googleusercontent.com", "GOCSPX-s%2Bcr%2Ft")
        assert "client_secret" not in dict(rec.form)  # exactly one authentication method (C2)


def test_azure_v1_strings_and_message(fault_server: FaultServer) -> None:
    """Azure AD v1: `verification_url`, numbers as strings, a ready-made `message`; no complete URI."""
    fault_server.script(
        "/device/code",
        Reply(
            json={
                "device_code": "DAQABAAEAAAD",
                "user_code": "FJ3KXCVSB",
                "verification_url": "https://microsoft.com/devicelogin",
                "expires_in": "900",
                "interval": "0",
                "message": "To sign in, use a web browser to open the page ...",
            }
        ),
    )
    fault_server.script("/token", Reply(status=400, json={"error": "authorization_pending"}), Reply(json=TOKEN))
    _, (prompt,) = _login(
        fault_server,
        NoClientAuth("04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
        resource="https://management.core.windows.net/",
    )
    assert (prompt.expires_in, prompt.interval, prompt.verification_uri_complete) == (900, 0, None)
    assert prompt.message and prompt.message.startswith("To sign in")
    device_form = dict(fault_server.recorded("/device/code")[0].form)
    assert device_form["resource"] == "https://management.core.windows.net/"


def test_github_errors_with_http_200(fault_server: FaultServer) -> None:
    """GitHub answers pending with HTTP 200; the client must keep polling, not crash on a missing token."""
    fault_server.script(
        "/device/code",
        Reply(
            json={
                "device_code": "3584d83",
                "user_code": "WDJB-MJHT",
                "verification_uri": "https://github.com/login/device",
                "expires_in": 900,
                "interval": 0,
            }
        ),
    )
    fault_server.script(
        "/token",
        Reply(json={"error": "authorization_pending"}),
        Reply(json={"error": "authorization_pending"}),
        Reply(
            json={
                "access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                "token_type": "bearer",
                "scope": "repo,gist",
            }
        ),
    )
    token, _ = _login(fault_server, NoClientAuth("Iv1.8a61f9b3a7aba766"), scope="repo")
    assert token.access_token.startswith("gho_")
    assert token.expires_at is None  # GitHub OAuth-app tokens: no expires_in
    assert fault_server.count("/token") == 3


def test_auth0_audience_is_sent(fault_server: FaultServer) -> None:
    fault_server.script(
        "/device/code",
        Reply(
            json={
                "device_code": "d",
                "user_code": "U",
                "expires_in": 60,
                "verification_uri": "https://x.auth0.com/activate",
                "interval": 0,
            }
        ),
    )
    fault_server.script("/token", Reply(json=TOKEN))
    _login(fault_server, NoClientAuth("cli"), scope="openid offline_access", audience="https://api.example")
    assert dict(fault_server.recorded("/device/code")[0].form)["audience"] == "https://api.example"
