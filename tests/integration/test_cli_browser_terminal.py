"""``tokensmith login --flow browser|auto`` in a pseudo-terminal, as the person meets it (issue 9 items 2 and 3):
paste mode on the terminal when no browser can open and the server has no device flow, a pasted address from
another login refused, and Ctrl-C while waiting for the redirect: exit 130, the listener closed, nothing stored."""

from __future__ import annotations

import io
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from idp_harness import BROWSER_PUBLIC, LocalIdP

pytestmark = pytest.mark.idp

SCOPE = "openid offline_access"
LINK = re.compile(rb"(http://127\.0\.0\.1:\d+/auth\?[^\s\x1b]+)")  # up to the end of the underline


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOKENSMITH_", "SSH_")) and k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "NO_COLOR")
    }
    # Over SSH and without a display: no browser can be opened here.
    env.update(SSH_CONNECTION="10.0.0.1 5000 10.0.0.2 22", TERM="xterm", XDG_CACHE_HOME=str(tmp_path / "cache"))
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    return env


def _explicit(idp: LocalIdP) -> list[str]:
    """Endpoints given explicitly and no device endpoint: ``auto`` has no device flow to fall back to."""
    return [
        "--token-endpoint", idp.token_endpoint,
        "--authorization-endpoint", idp.discovery["authorization_endpoint"],
        "--client-id", BROWSER_PUBLIC.client_id, "--scope", SCOPE,
    ]  # fmt: skip


def _spawn(argv: list[str], stdout_file: Path, env: dict[str, str]) -> pexpect.spawn:
    command = f"exec {shlex.join(argv)} > {shlex.quote(str(stdout_file))}"
    child = pexpect.spawn("/bin/sh", ["-c", command], env=env, dimensions=(60, 400), timeout=30)
    child.logfile_read = io.BytesIO()
    return child


def _screen(child: pexpect.spawn) -> bytes:
    log = child.logfile_read
    assert isinstance(log, io.BytesIO)
    return log.getvalue()


def _login(idp: LocalIdP, tmp_path: Path, *extra: str) -> tuple[pexpect.spawn, str]:
    argv = [sys.executable, "-m", "tokensmith", "login", "--flow", "auto", *_explicit(idp), *extra]
    child = _spawn(argv, tmp_path / "stdout", _env(tmp_path))
    child.expect(LINK)
    link = child.match.group(1).decode()
    child.expect(rb"Paste the address here and press Enter: ")
    return child, link


def _token(idp: LocalIdP, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tokensmith", "token", "--no-interactive", *_explicit(idp)]
    return subprocess.run(
        argv, env=_env(tmp_path), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_auto_with_no_browser_and_no_device_flow_pastes_on_the_terminal(idp: LocalIdP, tmp_path: Path) -> None:
    child, link = _login(idp, tmp_path)
    arrival = idp.authorize(link, deliver=False)  # the person signs in on another machine's browser
    child.sendline(arrival.redirect_url)
    child.expect(pexpect.EOF)
    child.close()
    screen = _screen(child)
    assert child.exitstatus == 0, screen
    assert b"Traceback" not in screen
    token = _token(idp, tmp_path)  # stored: the next command answers without a login
    assert token.returncode == 0 and token.stdout.strip(), token.stderr


def test_a_pasted_address_from_another_login_ends_it_and_stores_nothing(idp: LocalIdP, tmp_path: Path) -> None:
    child, link = _login(idp, tmp_path)
    arrival = idp.authorize(link, deliver=False)
    forged = re.sub(r"state=[^&]+", "state=not-this-login", arrival.redirect_url)  # RFC 6749 §10.12 (C22)
    child.sendline(forged)
    child.expect(pexpect.EOF)
    child.close()
    screen = _screen(child)
    assert child.exitstatus not in (0, 130), screen
    assert b"state" in screen and b"Traceback" not in screen
    assert arrival.redirect_url.encode() not in screen.split(b"here and press Enter: ", 1)[1]  # not echoed back
    token = _token(idp, tmp_path)
    assert token.returncode == 4 and not token.stdout  # login required: nothing was stored


def test_end_of_input_while_pasting_ends_the_login_cleanly(idp: LocalIdP, tmp_path: Path) -> None:
    child, _ = _login(idp, tmp_path)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    screen = _screen(child)
    assert child.exitstatus not in (0, None) and b"Traceback" not in screen, screen


def test_ctrl_c_while_waiting_for_the_redirect_exits_130_and_closes_the_listener(idp: LocalIdP, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port for a fixed redirect URI, so we can tell when it is let go
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redirect = f"http://127.0.0.1:{port}/callback"
    argv = [sys.executable, "-m", "tokensmith", "login", "--flow", "browser", "--no-browser",
            *_explicit(idp), "--redirect-uri", redirect]  # fmt: skip
    opened = tmp_path / "opened.log"
    browser = tmp_path / "browser.sh"  # a browser that could be opened, and must not be (--no-browser)
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o700)
    env = {**_env(tmp_path), "BROWSER": str(browser), "DISPLAY": ":0"}
    env.pop("SSH_CONNECTION")
    child = _spawn(argv, tmp_path / "stdout", env)
    child.expect(LINK)
    child.expect(rb"Waiting for the sign-in in the browser")
    assert b"Opening your browser" not in _screen(child)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the listener is up
    child.sendintr()
    child.expect(rb"interrupted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and b"Traceback" not in _screen(child)
    with pytest.raises(ConnectionRefusedError):  # the listener went with the login
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert _token(idp, tmp_path).returncode == 4
    assert not opened.exists()


def test_a_pasted_address_longer_than_the_terminals_line_buffer_completes_the_login(
    idp: LocalIdP, tmp_path: Path
) -> None:
    """A terminal in canonical mode keeps at most 4095 bytes of a line (Linux; 1023 on macOS) and silently drops
    the rest, and a redirect can be longer (long codes, extra parameters): the paste prompt must read it whole,
    or the code and state are cut off and the login fails for no reason the person can see."""
    child, link = _login(idp, tmp_path)
    arrival = idp.authorize(link, deliver=False)
    long_url = arrival.redirect_url.replace("?", "?padding=" + "x" * 6000 + "&", 1)
    assert len(long_url) > 6000
    child.sendline(long_url)
    child.expect(pexpect.EOF)
    child.close()
    screen = _screen(child)
    assert child.exitstatus == 0, screen[-2000:]
    assert b"Traceback" not in screen
    token = _token(idp, tmp_path)
    assert token.returncode == 0 and token.stdout.strip(), token.stderr
