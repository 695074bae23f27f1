"""``tokensmith device-login`` as a real process against a hostile server (issue 7, item 16): whatever the server
sends, nothing reaching the terminal can drive it or hide in it, no dangerous link goes to the browser, an
absurd lifetime does not crash the prompt, and the device code never shows."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

from fault_server import FaultServer, Reply

DEVICE_CODE = "dc-0123456789-secret"
HOSTILE_DEVICE_REPLY = {
    "device_code": DEVICE_CODE,
    "user_code": "WDJB\u202e-MJHT\u200b\u2066",
    "verification_uri": "https://idp.example/device",
    "verification_uri_complete": "--renderer-cmd-prefix=/bin/sh\u2066",
    "expires_in": 10**12,
    "interval": 1,
}
HOSTILE_ERROR = {
    "error": "invalid_client",
    "error_description": "client \x9b31mblocked\x9b0m \u202etxet desrever\u202c \u2028 see \x1b]8;;https://evil.example\x07",
}


def _recording_browser(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in browser for ``$BROWSER`` (Python's webbrowser runs ``$BROWSER <url>``): it appends the link
    it was given to a log."""
    log = tmp_path / "opened.log"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def _wait_for_lines(path: Path, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().splitlines()
        time.sleep(0.05)
    return []


def test_hostile_server_text_is_tamed_on_the_terminal(fault_server: FaultServer, tmp_path: Path) -> None:
    browser, opened_log = _recording_browser(tmp_path)
    fault_server.script("/device", Reply(json=HOSTILE_DEVICE_REPLY))
    fault_server.script(
        "/token", Reply(status=400, json={"error": "authorization_pending"}), Reply(status=400, json=HOSTILE_ERROR)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")}
    env.update({"BROWSER": str(browser), "PYTHONIOENCODING": "utf-8"})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokensmith",
            "device-login",
            "--device-authorization-endpoint",
            fault_server.url("/device"),
            "--token-endpoint",
            fault_server.url("/token"),
            "--client-id",
            "public-cli",
            "--browser",
            "--no-qr",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=60,
    )
    stderr = proc.stderr.decode("utf-8")
    assert proc.returncode == 5, stderr  # rejected by the IdP (invalid_client)
    assert proc.stdout == b""
    assert fault_server.count("/token") == 2  # it really polled until the server's error

    # Nothing that can drive the terminal or hide in the text: only printable characters and newlines.
    hidden = {ch for ch in stderr if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")}
    assert not hidden, sorted(f"U+{ord(ch):04X}" for ch in hidden)
    assert "    WDJB-MJHT\n" in stderr
    assert "    https://idp.example/device\n" in stderr
    assert "Link with the code filled in: --renderer-cmd-prefix=/bin/sh\n" in stderr
    assert "The code expires in more than a day." in stderr
    # The library already turns hidden characters in server text into spaces (tokensmith._protocol.errors).
    last = " ".join(stderr.splitlines()[-1].split())
    assert "client 31mblocked 0m txet desrever see ]8;;https://evil.example" in last
    assert DEVICE_CODE not in stderr

    # The browser got the plain link, never the option-like "complete" link.
    assert "Opening your browser" in stderr
    assert _wait_for_lines(opened_log) == ["https://idp.example/device"]


def test_terminal_escapes_in_the_device_answer_end_the_login_before_anything_is_shown(
    fault_server: FaultServer,
) -> None:
    """An escape sequence in the user code or link (OSC 52 writes the clipboard, OSC 0 the window title) is no
    code a person types and no URI: the answer is refused (exit 1), and no poll is made."""
    reply = {
        **HOSTILE_DEVICE_REPLY,
        "user_code": "WDJB-MJHT\x1b]0;pwned\x07",
        "verification_uri": "https://idp.example/device\x1b]52;c;ZXZpbA==\x07",
    }
    fault_server.script("/device", Reply(json=reply))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokensmith",
            "device-login",
            "--device-authorization-endpoint",
            fault_server.url("/device"),
            "--token-endpoint",
            fault_server.url("/token"),
            "--client-id",
            "public-cli",
            "--no-browser",
            "--no-qr",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=60,
    )
    stderr = proc.stderr.decode("utf-8")
    assert proc.returncode == 1, stderr
    assert "control characters" in stderr and "Traceback" not in stderr
    assert not {ch for ch in stderr if ch != "\n" and unicodedata.category(ch) == "Cc"}
    assert "pwned" not in stderr and DEVICE_CODE not in stderr
    assert fault_server.count("/token") == 0
