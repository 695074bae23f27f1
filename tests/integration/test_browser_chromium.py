"""End to end in a real browser (issue 9, "done when"): the browser login opens the system Chromium (headless, driven
by Selenium through the system chromedriver), the test fills the IdP's real login and consent forms in it, the
redirect reaches the loopback listener, and the token arrives and refreshes.

Chromium and chromedriver come from Debian's ``chromium`` and ``chromium-driver`` packages, which ``make test``
installs when they are missing. Selenium is given both paths, so Selenium Manager never runs (nothing is downloaded;
``SE_OFFLINE`` makes sure), and Chromium runs with background networking off: nothing leaves loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

import tokensmith
from browser_run import BackgroundLogin
from idp_harness import BROWSER_PUBLIC, LocalIdP

pytestmark = [pytest.mark.idp, pytest.mark.chromium]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: As root, in a container, on a closed network: no sandbox, no GPU, no /dev/shm, and none of Chromium's own
#: connections (component updates, sync, field trials), which this machine's network refuses.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--password-store=basic",
)
WAIT = 30


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make test` (it installs chromium and chromium-driver)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # were Selenium Manager ever reached, it could not download
    monkeypatch.delenv("SE_CHROMEDRIVER", raising=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")  # a fresh profile every time
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        assert driver.service.path == str(CHROMEDRIVER)
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


class ChromiumOpener:
    """The login's ``open_browser``: what ``webbrowser.open`` does for a person, done in the headless Chromium."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.opened = threading.Event()
        self.urls: list[str] = []

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        self.driver.get(url)
        self.opened.set()
        return True


def start(idp: LocalIdP, opener: ChromiumOpener) -> BackgroundLogin:
    return BackgroundLogin(
        authorization_endpoint=idp.discovery["authorization_endpoint"],
        token_endpoint=idp.token_endpoint,
        auth=tokensmith.NoClientAuth(BROWSER_PUBLIC.client_id),
        scope="openid offline_access",
        prompt="consent",
        issuer=idp.issuer,
        iss_required=True,
        open_browser=opener,
        login_timeout=90,
    )


def sign_in(driver: WebDriver, login: str = "alice") -> None:
    """Fill in the IdP's dev login form like a person."""
    wait = WebDriverWait(driver, WAIT)
    wait.until(ec.presence_of_element_located((By.NAME, "login"))).send_keys(login)
    driver.find_element(By.NAME, "password").send_keys("correct horse battery staple")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[name=prompt][value=consent]")))


def test_chromium_fills_the_real_login_and_consent_pages_and_the_token_refreshes(
    idp: LocalIdP, chromium: WebDriver
) -> None:
    opener = ChromiumOpener(chromium)
    login = start(idp, opener)
    prompt = login.prompt()
    assert prompt.browser is True
    assert opener.opened.wait(WAIT), "the login never opened the browser"
    assert opener.urls == [prompt.url]

    sign_in(chromium)
    chromium.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()  # consent: "Continue"
    WebDriverWait(chromium, WAIT).until(ec.title_is("Signed in"))

    token = login.result()
    assert token.access_token and token.refresh_token and token.scope == "openid offline_access"
    assert chromium.current_url.startswith(prompt.redirect_uri + "?")  # the redirect reached the listener
    page = chromium.page_source
    assert "You are signed in" in page
    for secret in (login.state, token.access_token, token.refresh_token, "code="):
        assert secret not in page

    with tokensmith.TokenClient(
        idp.token_endpoint, auth=tokensmith.NoClientAuth(BROWSER_PUBLIC.client_id), store=tokensmith.MemoryStore()
    ) as client:
        client.store.save(client.cache_key, token)
        renewed = client.refresh()
    assert renewed.access_token != token.access_token and client.stats.refreshes == 1


def test_chromium_cancelling_consent_ends_the_login_with_access_denied(idp: LocalIdP, chromium: WebDriver) -> None:
    opener = ChromiumOpener(chromium)
    login = start(idp, opener)
    login.prompt()
    assert opener.opened.wait(WAIT)
    sign_in(chromium)
    chromium.find_element(By.PARTIAL_LINK_TEXT, "Cancel").click()
    WebDriverWait(chromium, WAIT).until(ec.title_is("Sign-in failed"))
    error = login.failure()
    assert type(error) is tokensmith.AccessDenied
    assert "access_denied" in chromium.page_source
