"""The browser login's small driver pieces (issue 9 item 2): may a browser be opened here, which links may be opened,
and the listener's pages and binding rules."""

from __future__ import annotations

import inspect
import socket
import webbrowser

import pytest

import tokensmith
from browser_run import free_port, get, in_background
from tokensmith.browser import (
    ALREADY_DONE,
    REFUSED,
    SIGNED_IN,
    LoopbackListener,
    ResultPage,
    browser_login,
    can_open_browser,
    failure_page,
    open_in_browser,
)


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({}, "linux", False),  # no display
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}, "linux", False),  # X forwarding over SSH
        ({}, "darwin", True),
        ({"SSH_TTY": "/dev/pts/1"}, "darwin", False),
        ({}, "win32", True),
        ({"BROWSER": "wslview"}, "linux", True),  # BROWSER says how to open links
        ({"BROWSER": "/vscode/helpers/browser.sh", "SSH_CONNECTION": "x"}, "linux", True),  # VS Code remote
    ],
)
def test_can_open_browser(environ: dict[str, str], platform: str, expected: bool) -> None:
    assert can_open_browser(environ, platform=platform) is expected


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example/authorize?x=1",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "-https://idp.example/",
        "https://user:pw@idp.example/",
        "https://idp.example/\u202eevil",
        "https://idp.example\\@evil.example/",
    ],
)
def test_open_in_browser_refuses_anything_but_https_or_loopback_http(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda u, new=0: opened.append(u) or True)
    assert open_in_browser(url) is False
    assert opened == []


@pytest.mark.parametrize("url", ["https://idp.example/authorize?a=1", "http://127.0.0.1:9400/auth?a=1"])
def test_open_in_browser_uses_the_webbrowser_module(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, int]] = []
    monkeypatch.setattr(webbrowser, "open", lambda u, new=0: opened.append((u, new)) or True)
    assert open_in_browser(url) is True
    assert opened == [(url, 2)]  # a new tab


def test_open_in_browser_survives_a_broken_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(url: str, new: int = 0) -> bool:
        raise webbrowser.Error("no runnable browser")

    monkeypatch.setattr(webbrowser, "open", broken)
    assert open_in_browser("https://idp.example/") is False


def test_pages_are_small_escaped_and_secret_free() -> None:
    page = ResultPage(400, "<b>", "a & <script>").render().decode()
    assert "<b>" not in page.split("<title>")[1] and "&lt;script&gt;" in page and "&amp;" in page
    for fixed in (SIGNED_IN, REFUSED, ALREADY_DONE):
        assert len(fixed.render()) < 1024
    error = tokensmith.AccessDenied("access_denied", "no <way>")
    shown = failure_page(error).render().decode()
    assert "access_denied" in shown and "no &lt;way&gt;" in shown
    assert "could not be reached" in failure_page(tokensmith.ConnectError("x")).message


def test_the_listener_binds_loopback_only_and_reports_a_taken_port() -> None:
    with LoopbackListener() as listener:
        assert listener.redirect_uri == f"http://127.0.0.1:{listener.port}/callback"
        with pytest.raises(tokensmith.RedirectPortInUse) as caught:
            LoopbackListener(f"http://127.0.0.1:{listener.port}/callback")
        assert caught.value.port == listener.port and caught.value.host == "127.0.0.1"
        with socket.socket() as probe:  # nothing listens on the other interfaces
            probe.settimeout(2)
            assert probe.connect_ex(("127.0.0.2", listener.port)) != 0
    with pytest.raises(tokensmith.InvalidEndpointError):
        LoopbackListener("http://0.0.0.0:8000/callback")


def test_a_listener_waits_once() -> None:
    with LoopbackListener() as listener:
        with pytest.raises(tokensmith.BrowserLoginTimeout):
            listener.wait(lambda query: query, timeout=0.05)
        with pytest.raises(RuntimeError, match="once"):
            listener.wait(lambda query: query, timeout=0.05)


def test_a_redirect_arriving_before_wait_is_kept_not_refused() -> None:
    """A browser with a live session at the server can be redirected back before the login reaches ``wait()``."""
    with LoopbackListener() as listener:
        early, box = in_background(lambda: get(f"{listener.redirect_uri}?code=c&state=s"))
        early.join(0.3)
        assert early.is_alive()  # held until the listener is armed, not turned away
        assert listener.wait(lambda query: query, timeout=10) == "code=c&state=s"
        listener.finish(SIGNED_IN)
    early.join(10)
    assert box["value"].status_code == 200 and "Signed in" in box["value"].text
    assert listener.ignored == 0


def test_a_fixed_port_can_be_reused_right_after_a_login() -> None:
    port = free_port()
    for _ in range(2):
        with LoopbackListener(f"http://127.0.0.1:{port}/callback") as listener:
            assert listener.port == port


def test_browser_login_mirrors_device_login() -> None:
    parameters = inspect.signature(browser_login).parameters
    for name in ("on_prompt", "scope", "audience", "resource", "cancel", "login_timeout", "timeout", "transport",
                 "accepted_token_types"):  # fmt: skip
        assert name in parameters, name
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(browser_login).return_annotation in ("Token", tokensmith.Token)
    assert list(parameters)[:3] == ["authorization_endpoint", "token_endpoint", "auth"]


def test_a_public_client_id_is_required() -> None:
    with pytest.raises(ValueError, match="client_id"):
        browser_login("https://idp.example/a", "https://idp.example/t", tokensmith.NoClientAuth(), on_prompt=print)
