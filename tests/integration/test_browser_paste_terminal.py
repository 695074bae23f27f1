"""Paste mode in a pseudo-terminal against the real IdP (issue 9 item 2): no browser here, so the link is printed;
the person signs in elsewhere and pastes back the address their browser landed on (a loopback address nothing
listens on), typed into the terminal; a wrong ``state`` or the end of input ends the login with a typed error."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from idp_harness import BROWSER_PUBLIC, LocalIdP

pytestmark = pytest.mark.idp

HELPER = Path(__file__).resolve().parent.parent / "helpers" / "browser_paste.py"
LINK = re.compile(rb"(http://127\.0\.0\.1:\d+/auth\?\S+)")
OUTCOME = re.compile(rb'\{"(?:ok|error)".*\}')


def _spawn(idp: LocalIdP) -> pexpect.spawn:
    argv = [str(HELPER), idp.discovery["authorization_endpoint"], idp.token_endpoint, BROWSER_PUBLIC.client_id,
            "openid offline_access", idp.issuer]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    child = pexpect.spawn(sys.executable, argv, env={**env, "TERM": "xterm"}, dimensions=(50, 400), timeout=30)
    child.logfile_read = io.BytesIO()
    return child


def _link(child: pexpect.spawn) -> str:
    child.expect(rb"Open this link in a browser")
    child.expect(LINK)
    link = child.match.group(1).decode()
    child.expect(rb"Paste the address here: ")
    return link


def _outcome(child: pexpect.spawn) -> dict[str, object]:
    child.expect(OUTCOME)
    outcome: dict[str, object] = json.loads(child.match.group(0))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    return outcome


def test_the_pasted_address_completes_the_login(idp: LocalIdP) -> None:
    child = _spawn(idp)
    link = _link(child)
    arrival = idp.authorize(link, deliver=False)  # the person's browser, somewhere else
    child.sendline(arrival.redirect_url)
    assert _outcome(child) == {"ok": True, "scope": "openid offline_access", "refresh_token": True}
    screen = child.logfile_read.getvalue()  # type: ignore[union-attr]
    assert b"Traceback" not in screen


def test_a_blank_line_is_asked_again_then_the_address_is_taken(idp: LocalIdP) -> None:
    child = _spawn(idp)
    link = _link(child)
    child.sendline("")
    child.expect(rb"Paste the address here: ")
    child.sendline(idp.authorize(link, deliver=False).redirect_url)
    assert _outcome(child)["ok"] is True


def test_an_address_from_another_login_is_refused(idp: LocalIdP) -> None:
    child = _spawn(idp)
    link = _link(child)
    stale = re.sub(r"state=[^&]+", "state=from-an-earlier-login", idp.authorize(link, deliver=False).redirect_url)
    child.sendline(stale)
    assert _outcome(child) == {"error": "StateMismatch"}


def test_end_of_input_cancels(idp: LocalIdP) -> None:
    child = _spawn(idp)
    _link(child)
    child.sendeof()
    assert _outcome(child) == {"error": "BrowserLoginCancelled"}
