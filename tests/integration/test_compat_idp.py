"""The drop-in ``tokensmith.token_client`` against the real IdP (node oidc-provider, tests/idp).

Client credentials with Basic (C1, C5), the device flow approve/deny/expire (C13-C17), refresh with
rotation (C9, C26), and the seed module's defects, shown against a real server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from idp_harness import CC_CLIENT, DEVICE_CONFIDENTIAL, DEVICE_PUBLIC, ODD_CLIENT, LocalIdP
from tokensmith import PollProgress, basic_authorization
from tokensmith import exceptions as exc
from tokensmith import token_client as tc

pytestmark = pytest.mark.idp

DEVICE_SCOPES = ["openid", "offline_access"]


def _rfc_basic(client_id: str, secret: str | None) -> str:
    assert secret is not None
    return basic_authorization(client_id, secret, "rfc6749")


@contextmanager
def user_acts(action: Callable[[str], None], user_code: str) -> Iterator[None]:
    """The person at the browser, on another thread, while the client polls."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action(user_code)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=30)
    if errors:
        raise errors[0]


def test_client_credentials_with_an_awkward_secret(idp: LocalIdP) -> None:
    """C1, C5: the secret holds ':', '%', '+' and a space; the seed header (secret-only encoding) and the RFC
    encoding agree for an id without special characters, and the server accepts both."""
    for header in (
        tc.get_basic_authorization_header(CC_CLIENT.client_id, CC_CLIENT.client_secret or ""),
        _rfc_basic(CC_CLIENT.client_id, CC_CLIENT.client_secret),
    ):
        access, refresh, expires_in = tc.get_token(idp.token_endpoint, authorization_header=header)
        assert access and refresh is None and expires_in == 3600  # C5: no refresh token for client credentials


def test_client_id_with_slash_and_colon_needs_rfc_encoding(idp: LocalIdP) -> None:
    """C1: the seed's header leaves the id unencoded, so an id containing ':' is split in the wrong place.
    The RFC 6749 §2.3.1 encoding works."""
    seed_header = tc.get_basic_authorization_header(ODD_CLIENT.client_id, ODD_CLIENT.client_secret or "")
    with pytest.raises(exc.InvalidClient) as info:
        tc.get_token(idp.token_endpoint, authorization_header=seed_header)
    assert info.value.status_code == 401 and not info.value.transient
    access, _, _ = tc.get_token(
        idp.token_endpoint, authorization_header=_rfc_basic(ODD_CLIENT.client_id, ODD_CLIENT.client_secret)
    )
    assert access


def test_wrong_secret_is_invalid_client_and_never_echoed(idp: LocalIdP) -> None:
    """C8, C10."""
    header = _rfc_basic(CC_CLIENT.client_id, "wrong-secret-value")
    with pytest.raises(exc.InvalidClient) as info:
        tc.get_token(idp.token_endpoint, authorization_header=header, scopes=["api:read"])
    assert "wrong-secret-value" not in str(info.value) and header not in str(info.value)


def test_device_login_approved_then_refresh_rotates(idp: LocalIdP) -> None:
    """C14: oidc-provider sends no interval, so the client uses 5 s; C15: verification_uri_complete kept;
    C17: one poll when the user approves within the first interval; C9/C26: rotation."""
    code = tc.get_device_code(idp.device_authorization_endpoint, DEVICE_PUBLIC.client_id, scope=DEVICE_SCOPES)
    assert code.interval == 5 and code.expires_in > 0
    assert code.verification_uri_complete and code.user_code in code.verification_uri_complete
    progress: list[PollProgress] = []
    # Approved before polling starts, as in the denial test below: beside the polling, a loaded IdP could finish
    # the approval only after the first poll (5 s away), which then answered authorization_pending.
    idp.approve(code.user_code)
    access, refresh, expires_in = tc.poll_token_endpoint(
        code, idp.token_endpoint, DEVICE_PUBLIC.client_id, on_progress=progress.append
    )
    assert access and refresh and expires_in == 3600
    # Approved before the first poll: exactly one request, no pending answer, then the final event.
    assert [(p.outcome.value, p.polls) for p in progress] == [("approved", 1)]

    access2, refresh2, _ = tc.get_token(
        idp.token_endpoint,
        client_id=DEVICE_PUBLIC.client_id,
        grant_type=tc.GrantType.REFRESH_TOKEN,
        refresh_token=refresh,
    )
    assert access2 and refresh2 and refresh2 != refresh
    with pytest.raises(exc.InvalidGrant):  # the spent refresh token is dead (rotation)
        tc.get_token(
            idp.token_endpoint,
            client_id=DEVICE_PUBLIC.client_id,
            grant_type=tc.GrantType.REFRESH_TOKEN,
            refresh_token=refresh,
        )


def test_device_login_denied_stops_at_once(idp: LocalIdP) -> None:
    """C17: access_denied ends polling; it is an AccessDenied, not a generic error."""
    code = tc.get_device_code(idp.device_authorization_endpoint, DEVICE_PUBLIC.client_id, scope=DEVICE_SCOPES)
    progress: list[PollProgress] = []
    # Denied before polling starts (the first poll is 5 s away): beside the polling, a loaded IdP could finish the
    # denial only after that poll, which then answered authorization_pending.
    idp.deny(code.user_code)
    with pytest.raises(exc.AccessDenied) as info:
        tc.poll_token_endpoint(code, idp.token_endpoint, DEVICE_PUBLIC.client_id, on_progress=progress.append)
    assert info.value.error == "access_denied" and [(p.outcome.value, p.polls) for p in progress] == [("stopped", 1)]


def test_confidential_device_client(idp: LocalIdP) -> None:
    """C13, C16: a client with credentials authenticates on both device requests (Google's case)."""
    header = _rfc_basic(DEVICE_CONFIDENTIAL.client_id, DEVICE_CONFIDENTIAL.client_secret)
    with pytest.raises(exc.InvalidClient):
        tc.get_device_code(
            idp.device_authorization_endpoint,
            DEVICE_CONFIDENTIAL.client_id,
            scope=DEVICE_SCOPES,
            authorization_header=_rfc_basic(DEVICE_CONFIDENTIAL.client_id, "not-the-secret"),
        )
    code = tc.get_device_code(
        idp.device_authorization_endpoint,
        DEVICE_CONFIDENTIAL.client_id,
        scope=DEVICE_SCOPES,
        authorization_header=header,
    )
    with user_acts(idp.approve, code.user_code):
        access, refresh, _ = tc.poll_token_endpoint(
            code, idp.token_endpoint, DEVICE_CONFIDENTIAL.client_id, authorization_header=header
        )
    assert access and refresh


def test_device_code_expired_on_the_server(idp_short_device_ttl: LocalIdP) -> None:
    """C17: expired_token stops polling at once. The IdP's codes live 3 s; we pretend ours lives longer so
    the first poll (after 4 s) reaches the server after expiry."""
    idp = idp_short_device_ttl
    code = tc.get_device_code(idp.device_authorization_endpoint, DEVICE_PUBLIC.client_id, scope=DEVICE_SCOPES)
    assert code.expires_in == 3
    longer = tc.DeviceCodeResponse(code.device_code, code.user_code, code.verification_uri, 60, 4)
    progress: list[PollProgress] = []
    with pytest.raises(exc.ExpiredToken) as info:
        tc.poll_token_endpoint(longer, idp.token_endpoint, DEVICE_PUBLIC.client_id, on_progress=progress.append)
    assert info.value.status_code == 400 and [(p.outcome.value, p.polls) for p in progress] == [("stopped", 1)]


def test_device_code_expiry_is_enforced_by_the_client(idp_short_device_ttl: LocalIdP) -> None:
    """C17: with a 3 s code and the default 5 s interval, one poll goes out just before expiry (not after the
    interval, which would be too late) and none after it."""
    idp = idp_short_device_ttl
    code = tc.get_device_code(idp.device_authorization_endpoint, DEVICE_PUBLIC.client_id, scope=DEVICE_SCOPES)
    with pytest.raises(exc.ExpiredToken) as info:
        tc.poll_token_endpoint(code, idp.token_endpoint, DEVICE_PUBLIC.client_id)
    # Decided locally after the one pending poll, or by the IdP when a loaded machine delivered that poll after the
    # code's 3 s had run out.
    assert info.value.status_code in (None, 400)
