"""The browser login against the real IdP (node oidc-provider), its login and consent pages driven over HTTP by
``LocalIdP.authorize`` as a browser would (issue 9): a token with a refresh token that refreshes, a denial, RFC 9207
``iss``, a fixed and an IPv6 redirect URI, ``login_hint``/``prompt`` passed through, and flytekit's defaults."""

from __future__ import annotations

import threading

import pytest

import tokensmith
from browser_run import BackgroundLogin, free_port, get, in_background, ipv6_loopback_available, refused
from idp_harness import (
    BROWSER_PUBLIC,
    FLYTEKIT_PUBLIC,
    FLYTEKIT_REDIRECT_URI,
    FLYTEKIT_SCOPES,
    IdPInteractionError,
    LocalIdP,
)
from tokensmith.browser import browser_login

pytestmark = pytest.mark.idp


def start(idp: LocalIdP, client: str = BROWSER_PUBLIC.client_id, **kwargs: object) -> BackgroundLogin:
    options: dict[str, object] = {
        "authorization_endpoint": idp.discovery["authorization_endpoint"],
        "token_endpoint": idp.token_endpoint,
        "auth": tokensmith.NoClientAuth(client),
        "scope": "openid offline_access",
        "prompt": "consent",  # oidc-provider grants offline_access (a refresh token) only with prompt=consent
        "issuer": idp.issuer,
        "iss_required": idp.discovery["authorization_response_iss_parameter_supported"],
    }
    options.update(kwargs)
    return BackgroundLogin(**options)


def refresh(idp: LocalIdP, client: str, token: tokensmith.Token) -> tokensmith.Token:
    """Renew ``token`` through a TokenClient whose store holds it (the lead wires the login into TokenClient)."""
    with tokensmith.TokenClient(
        idp.token_endpoint, auth=tokensmith.NoClientAuth(client), store=tokensmith.MemoryStore()
    ) as client_:
        client_.store.save(client_.cache_key, token)
        renewed = client_.refresh()
        assert client_.stats.refreshes == 1
        return renewed


def test_discovery_exposes_what_the_browser_login_needs(idp: LocalIdP) -> None:
    with tokensmith.TokenClient.from_issuer(idp.issuer, BROWSER_PUBLIC.client_id) as client:
        metadata = client.discover()
    assert metadata is not None
    assert metadata.authorization_endpoint == f"{idp.issuer}/auth"
    assert metadata.authorization_response_iss_parameter_supported is True


def test_browser_login_gets_a_token_that_refreshes(idp: LocalIdP) -> None:
    login = start(idp)
    prompt = login.prompt()
    assert prompt.redirect_uri.startswith("http://127.0.0.1:")
    arrival = idp.authorize(prompt.url)
    token = login.result()
    assert arrival.status == 200 and arrival.page is not None and "Signed in" in arrival.page
    assert arrival.params["iss"] == idp.issuer  # RFC 9207: the server sent it and the login checked it
    assert token.refresh_token and token.id_token and token.scope == "openid offline_access"
    for secret in (arrival.params["code"], login.state, token.access_token, token.refresh_token):
        assert secret not in arrival.page
    renewed = refresh(idp, BROWSER_PUBLIC.client_id, token)
    assert renewed.access_token != token.access_token
    assert renewed.refresh_token not in (None, token.refresh_token)  # rotated (C26)


def test_without_offline_access_there_is_no_refresh_token(idp: LocalIdP) -> None:
    login = start(idp, scope="openid profile", prompt=None)
    idp.authorize(login.prompt().url)
    token = login.result()
    assert token.refresh_token is None and token.scope == "openid profile"


def test_denying_consent_is_access_denied(idp: LocalIdP) -> None:
    login = start(idp)
    arrival = idp.authorize(login.prompt().url, approve=False)
    error = login.failure()
    assert type(error) is tokensmith.AccessDenied and error.error == "access_denied"
    assert arrival.status == 400 and arrival.page is not None and "access_denied" in arrival.page


def test_a_code_for_another_issuer_is_refused_rfc9207(idp: LocalIdP) -> None:
    login = start(idp, issuer="https://other-issuer.example")
    arrival = idp.authorize(login.prompt().url)
    assert isinstance(login.failure(), tokensmith.IssuerMismatch)
    assert arrival.status == 400


def test_a_wrong_state_delivered_first_does_not_spoil_the_real_redirect(idp: LocalIdP) -> None:
    login = start(idp)
    arrival = idp.authorize(login.prompt().url, deliver=False)
    forged = arrival.redirect_url.replace(f"state={login.state}", "state=forged")
    assert get(forged).status_code == 400
    assert get(arrival.redirect_url).status_code == 200
    assert login.result().access_token


def test_a_fixed_loopback_port(idp: LocalIdP) -> None:
    fixed = f"http://127.0.0.1:{free_port()}/callback"
    login = start(idp, redirect_uri=fixed)
    assert login.prompt().redirect_uri == fixed
    arrival = idp.authorize(login.prompt().url)
    assert arrival.redirect_url.startswith(fixed + "?")
    assert login.result().access_token


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback(idp: LocalIdP) -> None:
    login = start(idp, redirect_uri="http://[::1]/callback")
    assert login.prompt().redirect_uri.startswith("http://[::1]:")
    idp.authorize(login.prompt().url)
    assert login.result().refresh_token


def test_login_hint_reaches_the_login_page(idp: LocalIdP) -> None:
    login = start(idp, login_hint="carol")
    page = idp.login_page(login.prompt().url)
    assert 'value="carol"' in page
    idp.authorize(login.prompt().url, login="carol")
    assert login.result().access_token


def test_cancel_while_the_person_is_on_the_login_page(idp: LocalIdP) -> None:
    login = start(idp)
    idp.login_page(login.prompt().url)
    login.cancel.set()
    assert isinstance(login.failure(), tokensmith.BrowserLoginCancelled)
    assert refused(login.prompt().redirect_uri)


# --- flytekit parity ----------------------------------------------------------------------------------------------


def test_flytekit_defaults_redirect_uri_and_scopes(idp: LocalIdP) -> None:
    """flytekit's default public client config: redirect http://localhost:53593/callback, scopes ``offline all``.
    The client is registered for exactly that URI (a web client: the port must match). One test for both logins:
    they need the same fixed port, and parallel test workers must not race for it."""
    login = start(idp, FLYTEKIT_PUBLIC.client_id, redirect_uri=FLYTEKIT_REDIRECT_URI, scope=list(FLYTEKIT_SCOPES),
                  prompt=None)  # fmt: skip
    prompt = login.prompt()
    assert prompt.redirect_uri == FLYTEKIT_REDIRECT_URI
    assert login.param("scope") == "offline all" and "nonce" not in prompt.url  # no openid, so no nonce
    arrival = idp.authorize(prompt.url)
    token = login.result()
    assert arrival.redirect_url.startswith(FLYTEKIT_REDIRECT_URI + "?")
    assert token.scope == "offline all" and token.refresh_token is None  # oidc-provider: offline_access only

    # With OpenID's offline_access (and prompt=consent, which oidc-provider needs for it): a refresh token.
    scopes = [*FLYTEKIT_SCOPES, "openid", "offline_access"]
    login = start(idp, FLYTEKIT_PUBLIC.client_id, redirect_uri=FLYTEKIT_REDIRECT_URI, scope=scopes)
    idp.authorize(login.prompt().url)
    token = login.result()
    assert token.scope is not None and set(token.scope.split()) == set(scopes)
    assert token.refresh_token
    assert refresh(idp, FLYTEKIT_PUBLIC.client_id, token).access_token != token.access_token


def test_the_flytekit_client_accepts_only_its_exact_redirect_uri(idp: LocalIdP) -> None:
    """What a fixed redirect_uri is for: an exact-match registration refuses any other port, so a random one fails
    at the server (an error page, no redirect) and the login runs into its timeout."""
    login = start(idp, FLYTEKIT_PUBLIC.client_id, redirect_uri=None, scope=list(FLYTEKIT_SCOPES), prompt=None,
                  login_timeout=2)  # fmt: skip
    with pytest.raises(IdPInteractionError, match="refused the authorization request"):
        idp.authorize(login.prompt().url)
    assert isinstance(login.failure(), tokensmith.BrowserLoginTimeout)


def test_two_logins_at_once_each_get_their_own_answer(idp: LocalIdP) -> None:
    """Two listeners, two states: each redirect is answered by its own login, nothing crosses."""
    first, second = start(idp), start(idp)
    assert first.prompt().redirect_uri != second.prompt().redirect_uri
    one, _ = in_background(lambda: idp.authorize(first.prompt().url))
    two, _ = in_background(lambda: idp.authorize(second.prompt().url))
    one.join(30)
    two.join(30)
    a, b = first.result(), second.result()
    assert a.access_token != b.access_token


def test_paste_mode_against_the_idp(idp: LocalIdP) -> None:
    """The person's browser lands on a loopback address nothing listens on; they paste it back."""
    ready = threading.Event()
    pasted: dict[str, str] = {}

    def paste() -> str:
        ready.wait(30)
        return pasted["url"]

    login = start(idp, paste=paste)
    prompt = login.prompt()
    assert prompt.paste and refused(prompt.redirect_uri)
    pasted["url"] = idp.authorize(prompt.url, deliver=False).redirect_url
    ready.set()
    assert login.result().refresh_token


def test_the_public_name_runs_the_same_login(idp: LocalIdP) -> None:
    assert tokensmith.browser_login is browser_login
    assert tokensmith.BrowserPrompt.__module__ == "tokensmith"
