"""flytekit's real authenticators (flytekit 1.16.24, unmodified) on tokensmith, against the local IdP.

With ``tokensmith.integrations.flytekit.install()``, flytekit's ``DeviceCodeAuthenticator`` and
``ClientCredentialsAuthenticator`` call ``tokensmith.token_client``, and their ``except AuthenticationError``
clauses catch tokensmith's classes. What flytekit's users rely on (IDP-QUIRKS, "What callers of the original
rely on"): only the server's verdict (``invalid_grant``) makes ``DeviceCodeAuthenticator`` throw the refresh
token away and start a new device login; a network failure or an HTML 502 page propagates as a ``requests``
exception and every credential stays where it was.

Credentials live in an in-memory keyring backend (``keyring.set_keyring``); nothing touches the machine's
keyring, and the backend, the bridge and every patched attribute are restored after each test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import keyring
import keyring.core
import pytest
import requests
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

import tokensmith
from fault_server import FaultServer, Reply
from idp_harness import CC_CLIENT, DEVICE_PUBLIC, LocalIdP
from tokensmith import token_client as ts_token_client
from tokensmith.integrations import flytekit as bridge

authenticator = pytest.importorskip("flytekit.clients.auth.authenticator")
flytekit_exceptions = pytest.importorskip("flytekit.clients.auth.exceptions")

pytestmark = pytest.mark.idp

SCOPES = ["openid", "offline_access"]
#: The Flyte endpoint flytekit keys its keyring entries by.
FLYTE_ENDPOINT = "dns:///flyte.tokensmith.test"
#: The real functions, for the tests' own requests (tests wrap the module attributes flytekit calls).
REAL_GET_DEVICE_CODE = ts_token_client.get_device_code
REAL_GET_TOKEN = ts_token_client.get_token


# --------------------------------------------------------------------------- fixtures


class MemoryKeyring(KeyringBackend):
    """A keyring that lives in a dict."""

    priority = -1  # never chosen by keyring's own discovery

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)

    def stored(self) -> dict[str, str]:
        """flytekit's entries for ``FLYTE_ENDPOINT``: ``{"access_token": ..., "refresh_token": ...}``."""
        return {user: secret for (service, user), secret in self.items.items() if service == FLYTE_ENDPOINT}


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    saved = keyring.core._keyring_backend  # not get_keyring(): that would probe the machine's backends
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.core._keyring_backend = saved


@pytest.fixture
def bridged() -> Iterator[None]:
    assert not bridge.installed()
    bridge.install()
    try:
        yield
    finally:
        bridge.uninstall()


@dataclass
class DeviceLogins:
    """Wraps ``tokensmith.token_client.get_device_code`` (which flytekit calls once the bridge is in): counts
    device logins and, if ``approve``, approves each user code in the IdP's pages, as the person would."""

    idp: LocalIdP
    real: Callable[..., Any]
    approve: bool = True
    user_codes: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        response = self.real(*args, **kwargs)
        self.user_codes.append(response.user_code)
        if self.approve:
            thread = threading.Thread(target=self._approve, args=(response.user_code,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return response

    def _approve(self, user_code: str) -> None:
        try:
            self.idp.approve(user_code)
        except BaseException as error:
            self.errors.append(error)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def device_logins(idp: LocalIdP, bridged: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceLogins]:
    logins = DeviceLogins(idp, REAL_GET_DEVICE_CODE)
    monkeypatch.setattr(ts_token_client, "get_device_code", logins)
    yield logins
    logins.join()


class Grant:
    """One device-login grant at the IdP, passed from test to test so that tests needing only *some* valid
    tokens pay one refresh instead of a device login (5 s of polling). Refresh tokens rotate and a reused one
    kills the grant, so the chain has one owner at a time: ``take()`` hands it over (logging in first if
    nobody gave it back), ``give_back()`` returns the newest refresh token."""

    def __init__(self, idp: LocalIdP) -> None:
        self.idp = idp
        self.head: str | None = None

    def take(self) -> tuple[str, str]:
        """A fresh ``(access_token, refresh_token)`` that only the caller holds."""
        head, self.head = self.head, None
        return refresh(self.idp, head or self._login())[:2]

    def give_back(self, refresh_token: str) -> None:
        self.head = refresh_token

    def _login(self) -> str:
        code = REAL_GET_DEVICE_CODE(self.idp.device_authorization_endpoint, DEVICE_PUBLIC.client_id, scope=SCOPES)
        approver = threading.Thread(target=self.idp.approve, args=(code.user_code,), daemon=True)
        approver.start()
        _, refresh_token, _ = ts_token_client.poll_token_endpoint(
            code, self.idp.token_endpoint, DEVICE_PUBLIC.client_id
        )
        approver.join(timeout=30)
        assert refresh_token
        return refresh_token


def refresh(idp: LocalIdP, refresh_token: str) -> tuple[str, str, int | None]:
    """A refresh with tokensmith directly (not through flytekit); the IdP rotates the refresh token."""
    access, new_refresh, expires_in = REAL_GET_TOKEN(
        idp.token_endpoint,
        client_id=DEVICE_PUBLIC.client_id,
        grant_type=ts_token_client.GrantType.REFRESH_TOKEN,
        refresh_token=refresh_token,
    )
    assert new_refresh and new_refresh != refresh_token
    return access, new_refresh, expires_in


def _config(
    idp: LocalIdP, *, token_endpoint: str | None = None, device_endpoint: str | None = None
) -> Any:  # flytekit's StaticClientConfigStore (flytekit is untyped)
    return authenticator.StaticClientConfigStore(
        authenticator.ClientConfig(
            token_endpoint=token_endpoint or idp.token_endpoint,
            authorization_endpoint=idp.discovery["authorization_endpoint"],
            redirect_uri="http://localhost:53593/callback",
            client_id=DEVICE_PUBLIC.client_id,
            device_authorization_endpoint=device_endpoint or idp.device_authorization_endpoint,
            scopes=SCOPES,
        )
    )


def _stored_in_keyring(memory_keyring: MemoryKeyring, access: str, refresh_token: str) -> None:
    """What a previous flytekit run left behind."""
    memory_keyring.set_password(FLYTE_ENDPOINT, "access_token", access)
    memory_keyring.set_password(FLYTE_ENDPOINT, "refresh_token", refresh_token)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port with nothing listening: bound (so nobody else takes it) but never ``listen()``-ed, so
    a connection attempt is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# --------------------------------------------------------------------------- tests


def test_device_login_then_refresh_with_rotation(
    idp: LocalIdP, memory_keyring: MemoryKeyring, device_logins: DeviceLogins
) -> None:
    authn = authenticator.DeviceCodeAuthenticator(FLYTE_ENDPOINT, _config(idp))
    assert authn.get_credentials() is None  # empty keyring: refresh_credentials() must log in

    authn.refresh_credentials()
    device_logins.join()
    assert len(device_logins.user_codes) == 1
    first = authn.get_credentials()
    assert first.access_token and first.refresh_token and first.expires_in == 3600
    assert memory_keyring.stored() == {"access_token": first.access_token, "refresh_token": first.refresh_token}
    assert authn.fetch_grpc_call_auth_metadata() == ("authorization", f"Bearer {first.access_token}")

    authn.refresh_credentials()  # a refresh, not a login
    second = authn.get_credentials()
    assert len(device_logins.user_codes) == 1
    assert second.refresh_token and second.refresh_token != first.refresh_token  # rotated
    assert second.access_token != first.access_token
    assert memory_keyring.stored() == {"access_token": second.access_token, "refresh_token": second.refresh_token}


@pytest.fixture(scope="module")
def grant(idp: LocalIdP) -> Grant:
    return Grant(idp)


def test_network_failure_keeps_the_refresh_token_and_starts_no_login(
    idp: LocalIdP,
    grant: Grant,
    memory_keyring: MemoryKeyring,
    device_logins: DeviceLogins,
    fault_server: FaultServer,
    closed_port: int,
) -> None:
    device_logins.approve = False
    access, kept = grant.take()
    _stored_in_keyring(memory_keyring, access, kept)
    before = memory_keyring.stored()
    authn = authenticator.DeviceCodeAuthenticator(
        FLYTE_ENDPOINT,
        _config(
            idp, token_endpoint=f"http://127.0.0.1:{closed_port}/token", device_endpoint=fault_server.url("/device")
        ),
    )
    assert authn.get_credentials().refresh_token == kept

    with pytest.raises(requests.ConnectionError) as info:
        authn.refresh_credentials()
    assert isinstance(info.value, tokensmith.ConnectError)
    assert not isinstance(info.value, flytekit_exceptions.AuthenticationError)
    assert device_logins.user_codes == [] and fault_server.count("/device") == 0  # no device login started
    assert memory_keyring.stored() == before  # nothing deleted
    assert authn.get_credentials().refresh_token == kept

    authn._token_endpoint = idp.token_endpoint  # the network is back
    authn.refresh_credentials()
    renewed = authn.get_credentials()
    assert renewed.refresh_token and renewed.refresh_token != kept  # the kept token was accepted and rotated
    assert memory_keyring.stored() == {"access_token": renewed.access_token, "refresh_token": renewed.refresh_token}
    assert device_logins.user_codes == [] and fault_server.count("/device") == 0
    grant.give_back(renewed.refresh_token)


def test_html_502_keeps_the_refresh_token_and_starts_no_login(
    idp: LocalIdP,
    grant: Grant,
    memory_keyring: MemoryKeyring,
    device_logins: DeviceLogins,
    fault_server: FaultServer,
) -> None:
    device_logins.approve = False
    access, kept = grant.take()
    _stored_in_keyring(memory_keyring, access, kept)
    before = memory_keyring.stored()
    fault_server.script(
        "/token",
        Reply(status=502, body="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"),
    )
    authn = authenticator.DeviceCodeAuthenticator(
        FLYTE_ENDPOINT,
        _config(idp, token_endpoint=fault_server.url("/token"), device_endpoint=fault_server.url("/device")),
    )

    with pytest.raises(requests.exceptions.JSONDecodeError) as info:
        authn.refresh_credentials()
    assert isinstance(info.value, tokensmith.NonJSONResponse) and info.value.status_code == 502
    assert not isinstance(info.value, flytekit_exceptions.AuthenticationError)
    (sent,) = fault_server.recorded("/token")  # one refresh request, with the stored refresh token
    assert ("grant_type", "refresh_token") in sent.form and ("refresh_token", kept) in sent.form
    assert device_logins.user_codes == [] and fault_server.count("/device") == 0
    assert memory_keyring.stored() == before
    assert authn.get_credentials().refresh_token == kept

    authn._token_endpoint = idp.token_endpoint  # the gateway recovers
    authn.refresh_credentials()
    renewed = authn.get_credentials()
    assert renewed.refresh_token and renewed.refresh_token != kept
    assert memory_keyring.stored()["refresh_token"] == renewed.refresh_token
    assert device_logins.user_codes == [] and fault_server.count("/device") == 0
    grant.give_back(renewed.refresh_token)


def test_a_redirect_to_a_login_page_keeps_the_refresh_token_and_starts_no_login(
    idp: LocalIdP,
    grant: Grant,
    memory_keyring: MemoryKeyring,
    device_logins: DeviceLogins,
    fault_server: FaultServer,
) -> None:
    """An SSO gateway in front of the IdP answers the refresh with a 302 to its login page. flytekit on its own
    followed it and failed on the HTML page (a ``requests`` exception): the credentials stayed. On tokensmith the
    redirect is not followed (C27) and must not be an ``AuthenticationError`` either, which flytekit takes as
    "refresh token rejected": it would delete the credentials and start a device login."""
    device_logins.approve = False
    access, kept = grant.take()
    _stored_in_keyring(memory_keyring, access, kept)
    before = memory_keyring.stored()
    fault_server.script("/token", Reply(status=302, headers={"Location": fault_server.url("/sso/login")}))
    authn = authenticator.DeviceCodeAuthenticator(
        FLYTE_ENDPOINT,
        _config(idp, token_endpoint=fault_server.url("/token"), device_endpoint=fault_server.url("/device")),
    )

    with pytest.raises(requests.RequestException) as info:
        authn.refresh_credentials()
    assert isinstance(info.value, tokensmith.UnexpectedRedirect) and info.value.status_code == 302
    assert not isinstance(info.value, flytekit_exceptions.AuthenticationError)
    assert fault_server.count("/token") == 1 and fault_server.count("/sso/login") == 0
    assert device_logins.user_codes == [] and fault_server.count("/device") == 0
    assert memory_keyring.stored() == before
    assert authn.get_credentials().refresh_token == kept

    authn._token_endpoint = idp.token_endpoint  # the gateway lets the request through again
    authn.refresh_credentials()
    renewed = authn.get_credentials()
    assert renewed.refresh_token and renewed.refresh_token != kept
    assert memory_keyring.stored()["refresh_token"] == renewed.refresh_token
    assert device_logins.user_codes == []
    grant.give_back(renewed.refresh_token)


def test_a_device_prompt_with_terminal_escapes_never_reaches_flytekits_terminal(
    idp: LocalIdP,
    memory_keyring: MemoryKeyring,
    bridged: None,
    fault_server: FaultServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """flytekit prints ``verification_uri`` and ``user_code`` to the terminal as they came (click.secho). A hostile
    or broken server's escape sequences (OSC 52 writes the clipboard, OSC 0 the window title) would drive the
    person's terminal: such an answer is refused, nothing is printed, no poll is made."""
    fault_server.script(
        "/device",
        Reply(
            json={
                "device_code": "dc-secret",
                "user_code": "WDJB-MJHT\x1b]0;pwned\x07",
                "verification_uri": "https://idp.example/device\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\x07",
                "expires_in": 600,
            }
        ),
    )
    authn = authenticator.DeviceCodeAuthenticator(
        FLYTE_ENDPOINT,
        _config(idp, token_endpoint=fault_server.url("/token"), device_endpoint=fault_server.url("/device")),
    )
    with pytest.raises(tokensmith.InvalidResponse, match="control characters"):
        authn.refresh_credentials()
    out, err = capfd.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert fault_server.count("/device") == 1 and fault_server.count("/token") == 0
    assert memory_keyring.stored() == {} and authn.get_credentials() is None


def test_invalid_grant_is_caught_by_flytekit_and_falls_back_to_a_device_login(
    idp: LocalIdP,
    grant: Grant,
    memory_keyring: MemoryKeyring,
    device_logins: DeviceLogins,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exception bridge: tokensmith's ``InvalidGrant`` reaches flytekit's ``except (AuthenticationError,
    AuthenticationPending)``, which deletes the stored credentials and logs in again (the test approves)."""
    access, spent = grant.take()
    refresh(idp, spent)  # someone else used it: rotation makes `spent` dead (and its reuse kills the grant)
    _stored_in_keyring(memory_keyring, access, spent)
    refresh_errors: list[BaseException] = []

    def recording_get_token(*args: Any, **kwargs: Any) -> Any:
        try:
            return REAL_GET_TOKEN(*args, **kwargs)
        except BaseException as error:
            refresh_errors.append(error)
            raise

    monkeypatch.setattr(ts_token_client, "get_token", recording_get_token)
    authn = authenticator.DeviceCodeAuthenticator(FLYTE_ENDPOINT, _config(idp))

    authn.refresh_credentials()
    device_logins.join()
    assert [type(e) for e in refresh_errors] == [tokensmith.InvalidGrant]
    assert isinstance(refresh_errors[0], flytekit_exceptions.AuthenticationError)
    assert len(device_logins.user_codes) == 1  # the fallback device login, approved
    new = authn.get_credentials()
    assert new.refresh_token and new.refresh_token != spent
    assert memory_keyring.stored() == {"access_token": new.access_token, "refresh_token": new.refresh_token}


def test_client_credentials_authenticator(idp: LocalIdP, bridged: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """flytekit builds the Basic header with ``get_basic_authorization_header`` (only the secret is
    form-encoded). ``CC_CLIENT``'s id has no special characters and the IdP decodes the header as RFC 6749
    §2.3.1 says, so its awkward secret (``:``, ``%``, ``+``, space, ``/``, ``~``) works."""
    calls: list[dict[str, Any]] = []

    def recording_get_token(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return REAL_GET_TOKEN(*args, **kwargs)

    monkeypatch.setattr(ts_token_client, "get_token", recording_get_token)
    assert CC_CLIENT.client_secret is not None
    cfg = authenticator.StaticClientConfigStore(
        authenticator.ClientConfig(
            token_endpoint=idp.token_endpoint,
            authorization_endpoint=idp.discovery["authorization_endpoint"],
            redirect_uri="http://localhost:53593/callback",
            client_id="unused",
        )
    )
    authn = authenticator.ClientCredentialsAuthenticator(
        FLYTE_ENDPOINT, client_id=CC_CLIENT.client_id, client_secret=CC_CLIENT.client_secret, cfg_store=cfg
    )
    authn.refresh_credentials()
    token = authn.get_credentials().access_token
    assert len(calls) == 1
    assert calls[0]["authorization_header"] == ts_token_client.get_basic_authorization_header(
        CC_CLIENT.client_id, CC_CLIENT.client_secret
    )
    # The IdP knows the token: introspection (RFC 7662) with the same client's RFC-encoded credentials.
    introspection = requests.post(
        idp.introspection_endpoint,
        data={"token": token},
        headers={"Authorization": tokensmith.basic_authorization(CC_CLIENT.client_id, CC_CLIENT.client_secret)},
        timeout=10,
    )
    assert introspection.status_code == 200
    assert introspection.json()["active"] is True and introspection.json()["client_id"] == CC_CLIENT.client_id


def test_without_install_flytekits_except_clause_does_not_catch_tokensmith_errors(idp: LocalIdP) -> None:
    """Only the import changed (``from tokensmith import token_client``), no ``install()``: tokensmith's
    ``InvalidGrant`` is a ``tokensmith.AuthenticationError``, not flytekit's, so code written like flytekit's
    ``DeviceCodeAuthenticator`` does not catch it; the refresh failure escapes instead of falling back to a
    login. With ``install()`` the same clause catches it."""
    assert not bridge.installed()

    def refresh_like_flytekit() -> str:
        from flytekit.clients.auth.exceptions import AuthenticationError, AuthenticationPending

        from tokensmith import token_client

        try:
            token_client.get_token(
                idp.token_endpoint,
                client_id=DEVICE_PUBLIC.client_id,
                grant_type=token_client.GrantType.REFRESH_TOKEN,
                refresh_token="not-a-refresh-token-the-idp-issued",
            )
        except (AuthenticationError, AuthenticationPending):
            return "fell back to a device login"
        return "refreshed"

    with pytest.raises(tokensmith.InvalidGrant) as info:
        refresh_like_flytekit()
    assert not isinstance(info.value, flytekit_exceptions.AuthenticationError)

    bridge.install()
    try:
        assert refresh_like_flytekit() == "fell back to a device login"
    finally:
        bridge.uninstall()
    assert flytekit_exceptions.AuthenticationError is not tokensmith.AuthenticationError
