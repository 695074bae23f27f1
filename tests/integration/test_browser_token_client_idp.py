"""Issue 9 item 3: ``TokenClient`` logs in through the browser flow (and ``auto`` picks the flow the person can
use), with the same store, single flight and refresh as the device flow; and ``tokensmith login --flow browser``.
The IdP's login and consent pages are driven over HTTP by ``LocalIdP.authorize``, as the person's browser would."""

from __future__ import annotations

import os
import queue
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tokensmith
from idp_harness import BROWSER_PUBLIC, DEVICE_PUBLIC, LocalIdP

pytestmark = pytest.mark.idp
SCOPE = "openid offline_access"


@pytest.fixture
def no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session where no browser can be opened here: over SSH, no display, no BROWSER."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "WSL_DISTRO_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 5000 10.0.0.2 22")


@pytest.fixture
def browser_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session where a browser can be opened (``BROWSER`` set) that opens nothing (``true``): the test plays
    the person's browser itself with ``LocalIdP.authorize``."""
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.setenv("BROWSER", "true")


def test_browser_login_through_token_client_is_stored_and_refreshes(idp: LocalIdP, browser_here: None) -> None:
    prompts: list[object] = []

    def on_prompt(prompt: object) -> None:
        prompts.append(prompt)
        assert isinstance(prompt, tokensmith.BrowserPrompt)
        threading.Thread(target=idp.authorize, args=(prompt.url,), daemon=True).start()

    client = tokensmith.TokenClient.from_issuer(
        idp.issuer, BROWSER_PUBLIC.client_id, scope=SCOPE, login_flow="browser", on_prompt=on_prompt
    )
    token = client.get_token(interactive=True)
    assert token.refresh_token and len(prompts) == 1 and client.stats.logins == 1
    assert client.store.load(client.cache_key) == token  # stored like any renewal
    assert client.get_token() is token  # and served from memory
    renewed = client.refresh()
    assert renewed.access_token != token.access_token and renewed.refresh_token != token.refresh_token


def test_auto_without_a_browser_uses_the_device_flow(idp: LocalIdP, no_display: None) -> None:
    prompts: list[object] = []

    def on_prompt(prompt: object) -> None:
        prompts.append(prompt)
        assert isinstance(prompt, tokensmith.DevicePrompt)
        threading.Thread(target=idp.approve, args=(prompt.user_code,), daemon=True).start()

    client = tokensmith.TokenClient.from_issuer(
        idp.issuer, DEVICE_PUBLIC.client_id, scope=SCOPE, login_flow="auto", on_prompt=on_prompt
    )
    assert client.login().refresh_token and len(prompts) == 1


def test_auto_without_a_browser_or_device_flow_pastes(idp: LocalIdP, no_display: None) -> None:
    """No browser here and no device endpoint known: the browser flow in paste mode (the person pastes back the
    address their browser landed on)."""
    pasted: queue.Queue[str] = queue.Queue()

    def on_prompt(prompt: object) -> None:
        assert isinstance(prompt, tokensmith.BrowserPrompt) and prompt.paste and not prompt.browser
        pasted.put(idp.authorize(prompt.url, deliver=False).redirect_url)  # nothing listens: it is pasted

    client = tokensmith.TokenClient(
        idp.token_endpoint,
        BROWSER_PUBLIC.client_id,
        authorization_endpoint=idp.discovery["authorization_endpoint"],
        scope=SCOPE,
        login_flow="auto",
        on_prompt=on_prompt,
    )
    client.paste = lambda: pasted.get(timeout=30)
    token = client.login()
    assert token.refresh_token and client.stats.logins == 1


def test_auto_with_no_way_to_log_in_says_so(no_display: None) -> None:
    client = tokensmith.TokenClient(
        "https://idp.example/token",
        "c",
        authorization_endpoint="https://idp.example/authorize",
        login_flow="auto",
        on_prompt=lambda prompt: None,
    )
    with pytest.raises(tokensmith.DiscoveryError, match="no way to log in here"):
        client.login()


def test_an_insecure_authorization_endpoint_is_refused_at_construction() -> None:
    with pytest.raises(tokensmith.InsecureEndpointError):
        tokensmith.TokenClient("https://idp.example/token", "c", authorization_endpoint="http://idp.example/authorize")


def test_cli_login_flow_browser(idp: LocalIdP, tmp_path: Path) -> None:
    """``tokensmith login --flow browser``: the link on stderr, the browser (``BROWSER``) given the link, the
    redirect caught, the token stored; ``tokensmith token`` then answers from the store."""
    opened = tmp_path / "opened.log"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TOKENSMITH_", "SSH_"))},
        "BROWSER": str(browser),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    identity = ["--issuer", idp.issuer, "--client-id", BROWSER_PUBLIC.client_id, "--scope", SCOPE]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokensmith", "login", "--flow", "browser", *identity],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (opened.exists() and opened.read_text().endswith("\n")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (url,) = opened.read_text().split()
    idp.authorize(url)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "" and "To sign in, open this page in a browser" in err and "Logged in" in err
    assert "code=" not in err  # the redirect's code is never shown
    token = subprocess.run(
        [sys.executable, "-m", "tokensmith", "token", "--no-interactive", *identity],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert token.returncode == 0 and token.stdout.strip()


def test_open_browser_false_only_shows_the_link_and_auto_then_pastes(
    idp: LocalIdP, browser_here: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``client.open_browser = False`` (the CLI's ``--no-browser``): a browser that could be opened is not; the
    browser flow still catches the redirect on its listener, and ``auto`` treats it as "no browser here"."""
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    prompts: list[tokensmith.BrowserPrompt] = []

    def on_prompt(prompt: object) -> None:
        assert isinstance(prompt, tokensmith.BrowserPrompt)
        prompts.append(prompt)
        threading.Thread(target=idp.authorize, args=(prompt.url,), daemon=True).start()

    client = tokensmith.TokenClient.from_issuer(
        idp.issuer, BROWSER_PUBLIC.client_id, scope=SCOPE, login_flow="browser", on_prompt=on_prompt
    )
    client.open_browser = False
    assert client.login().refresh_token
    assert [p.browser for p in prompts] == [False] and opened == []

    pasted: queue.Queue[str] = queue.Queue()
    explicit = tokensmith.TokenClient(
        idp.token_endpoint,
        BROWSER_PUBLIC.client_id,
        authorization_endpoint=idp.discovery["authorization_endpoint"],
        scope=SCOPE,
        login_flow="auto",
        on_prompt=lambda prompt: pasted.put(idp.authorize(prompt.url, deliver=False).redirect_url),
    )
    explicit.open_browser = False
    explicit.paste = lambda: pasted.get(timeout=30)
    assert explicit.login().refresh_token and opened == []
