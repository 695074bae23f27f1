"""Running ``tokensmith.browser.browser_login`` in a background thread while a test plays the browser.

The test waits for the ``BrowserPrompt`` (the link and the redirect URI), then sends requests to the listener itself
(or lets ``LocalIdP.authorize`` or Chromium do it), and finally collects the login's outcome.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tokensmith import Token
from tokensmith.browser import BrowserPrompt, browser_login

WAIT = 30.0


class BackgroundLogin:
    """``browser_login(**kwargs)`` on a thread. ``open_browser`` defaults to None (no browser): the test is it."""

    def __init__(self, **kwargs: Any) -> None:
        self.prompted = threading.Event()
        self.cancel = kwargs.setdefault("cancel", threading.Event())
        kwargs.setdefault("open_browser", None)
        kwargs.setdefault("login_timeout", WAIT)
        self.kwargs = kwargs
        self.done = threading.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None
        self._prompt: BrowserPrompt | None = None
        self.thread = threading.Thread(target=self._run, name="browser-login-under-test", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.token = browser_login(on_prompt=self._on_prompt, **self.kwargs)
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()

    def _on_prompt(self, prompt: BrowserPrompt) -> None:
        assert self._prompt is None, "on_prompt called twice"
        self._prompt = prompt
        self.prompted.set()

    def prompt(self, timeout: float = WAIT) -> BrowserPrompt:
        if not self.prompted.wait(timeout):
            raise AssertionError(f"no prompt; the login ended with {self.error!r}")
        assert self._prompt is not None
        return self._prompt

    @property
    def state(self) -> str:
        return self.param("state")

    def param(self, name: str) -> str:
        return parse_qs(urlsplit(self.prompt().url).query)[name][0]

    def redirect(self, **params: str) -> str:
        """The redirect URI with ``params`` as its query: what a server would send the browser to."""
        return self.prompt().redirect_uri + "?" + urlencode(params)

    def outcome(self, timeout: float = WAIT) -> Token | BaseException:
        if not self.done.wait(timeout):
            raise AssertionError("the login did not end")
        if self.error is not None:
            return self.error
        assert self.token is not None
        return self.token

    def result(self, timeout: float = WAIT) -> Token:
        outcome = self.outcome(timeout)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def failure(self, timeout: float = WAIT) -> BaseException:
        outcome = self.outcome(timeout)
        assert isinstance(outcome, BaseException), f"expected a failure, got {outcome!r}"
        return outcome


def get(url: str, **kwargs: Any) -> requests.Response:
    """One plain GET, as a browser tab would send it (no proxy, no redirects)."""
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=WAIT, allow_redirects=False, **kwargs)


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def refused(url: str) -> bool:
    """True when nothing listens at ``url`` any more."""
    try:
        get(url)
    except requests.ConnectionError:
        return True
    return False
