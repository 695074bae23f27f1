"""The ``tokensmith device-login`` and ``tokensmith login`` commands in a pseudo-terminal against the real IdP
(RFC 8628 §3.3, C15): the person sees the link, the code and a QR block on the terminal; stdout carries the token
(and for ``login``, nothing); Ctrl-C ends cleanly and leaves the stored token as it was."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pexpect
import pytest

from cli_harness import TOKENSMITH, Cli
from idp_harness import DEVICE_PUBLIC, LocalIdP
from tokensmith import TokenClient

pytestmark = pytest.mark.idp

CODE = re.compile(rb"([A-Z]{4}-[A-Z]{4})")
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _argv(idp: LocalIdP, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tokensmith",
        "device-login",
        "--device-authorization-endpoint",
        idp.device_authorization_endpoint,
        "--token-endpoint",
        idp.token_endpoint,
        "--client-id",
        DEVICE_PUBLIC.client_id,
        "--scope",
        "openid offline_access",
        *extra,
    ]


def _env(base: Mapping[str, str] = os.environ, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in base.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "NO_COLOR", "SSH_CONNECTION", "SSH_TTY")
    }
    env.update({"TERM": "xterm-256color", "COLUMNS": "160", "LINES": "60", **overrides})
    return env


def _spawn(argv: list[str], stdout_file: Path, env: dict[str, str]) -> pexpect.spawn:
    """stderr is the terminal; stdout goes to a file so we can check it holds only the token."""
    command = f"exec {shlex.join(argv)} > {shlex.quote(str(stdout_file))}"
    child = pexpect.spawn("/bin/sh", ["-c", command], env=env, dimensions=(60, 160), timeout=30)
    child.logfile_read = io.BytesIO()  # the whole screen, for assertions
    return child


def _screen(child: pexpect.spawn) -> bytes:
    log = child.logfile_read
    assert isinstance(log, io.BytesIO)
    return log.getvalue()


def test_terminal_shows_link_code_and_qr_and_stdout_holds_only_the_token(idp: LocalIdP, tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    child = _spawn(_argv(idp), out, _env())
    child.expect(rb"enter the code:")
    child.expect(CODE)
    user_code = child.match.group(1).decode()
    child.expect(rb"scan this QR code")
    child.expect("█".encode())  # the QR block itself
    idp.approve(user_code)
    child.expect(rb"Signed in\.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    screen = _screen(child)
    assert f"    {idp.verification_uri}".encode() in screen.replace(b"\x1b[4m", b"")  # the link, on its own line
    assert f"user_code={user_code}".encode() in screen  # the complete link too
    stdout = out.read_text()
    assert stdout.endswith("\n") and stdout.count("\n") == 1
    assert B64TOKEN.fullmatch(stdout.strip())


def test_no_color_and_ctrl_c(idp: LocalIdP, tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    child = _spawn(_argv(idp), out, _env(NO_COLOR="1"))
    child.expect(CODE)
    child.expect(rb"left")  # the live status line is running
    child.sendintr()
    child.expect(rb"interrupted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    transcript = _screen(child)
    assert b"\x1b[1m" not in transcript and b"\x1b[4m" not in transcript  # no colour with NO_COLOR
    assert b"Traceback" not in transcript
    assert out.read_text() == ""  # nothing on stdout


def test_plain_text_when_stderr_is_not_a_terminal(idp: LocalIdP) -> None:
    proc = subprocess.Popen(
        _argv(idp, "--no-browser"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True
    )
    assert proc.stderr is not None
    seen = ""
    while "enter the code" not in seen or not CODE.search(seen.encode()):
        line = proc.stderr.readline()
        assert line, f"command ended early: {seen}"
        seen += line
    match = CODE.search(seen.encode())
    assert match
    idp.approve(match.group(1).decode())
    stdout, stderr = proc.communicate(timeout=30)
    seen += stderr
    assert proc.returncode == 0
    assert "\x1b" not in seen and "\r" not in seen and "█" not in seen
    assert B64TOKEN.fullmatch(stdout.strip()) and stdout.count("\n") == 1


# -- stdout that cannot take the token (issue 7, item 16) ---------------------------------------------------

CLOSED_STDOUT = "tokensmith: cannot write the token to stdout (closed); nothing was printed\n"


def _read_until_code(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """stderr up to and including the user code, and the code."""
    assert proc.stderr is not None
    seen = ""
    while not (match := CODE.search(seen.encode())) or "enter the code" not in seen:
        line = proc.stderr.readline()
        assert line, f"command ended early: {seen}"
        seen += line
    return seen, match.group(1).decode()


def _assert_one_clean_complaint(stderr: str, expected_line: str) -> None:
    """The person gets exactly one line about stdout, as the last line, and no Python noise."""
    assert stderr.endswith(expected_line)
    assert stderr.count("tokensmith:") == 1
    for noise in ("Traceback", "Exception ignored", "BrokenPipeError", "Error:"):
        assert noise not in stderr


def test_closed_stdout_fails_at_once_with_one_line(idp: LocalIdP) -> None:
    """``tokensmith device-login ... >&-``: nothing could ever be printed, so no login is started."""
    proc = subprocess.run(
        ["/bin/sh", "-c", 'exec "$@" >&-', "sh", *_argv(idp, "--no-browser")],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr == CLOSED_STDOUT  # exactly one line: no prompt, so no code was ever asked for


def test_stdout_reader_gone_after_sign_in_fails_with_one_line(idp: LocalIdP) -> None:
    """``tokensmith device-login ... | head -c0``: the reader is gone when the token arrives (EPIPE)."""
    proc = subprocess.Popen(
        _argv(idp, "--no-browser"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True
    )
    seen, user_code = _read_until_code(proc)
    assert proc.stdout is not None
    proc.stdout.close()  # the only reader of the pipe goes away
    proc.stdout = None
    idp.approve(user_code)
    _, stderr = proc.communicate(timeout=30)
    seen += stderr
    assert proc.returncode == 1
    assert "Signed in." in seen  # the login itself worked; only printing failed
    _assert_one_clean_complaint(
        seen,
        "tokensmith: cannot write the token to stdout (the reading end of the pipe has gone); nothing was printed\n",
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_disk_fails_with_one_line(idp: LocalIdP) -> None:
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'exec "$@" >/dev/full', "sh", *_argv(idp, "--no-browser")],
        stderr=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    seen, user_code = _read_until_code(proc)
    idp.approve(user_code)
    _, stderr = proc.communicate(timeout=30)
    seen += stderr
    assert proc.returncode == 1
    _assert_one_clean_complaint(
        seen, "tokensmith: cannot write the token to stdout (No space left on device); nothing was printed\n"
    )


# -- tokensmith login / token in a terminal (issue 8) -------------------------------------------------------------


def _login_args(idp: LocalIdP) -> list[str]:
    return ["--issuer", idp.issuer, "--client-id", DEVICE_PUBLIC.client_id, "--scope", "openid offline_access"]


def _spawn_tokensmith(cli: Cli, args: list[str], stdout_file: Path, **env: str) -> pexpect.spawn:
    """``tokensmith *args`` on the terminal, in the sandboxed home."""
    return _spawn([str(TOKENSMITH), *args], stdout_file, _env(cli.env, **env))


def test_login_in_a_terminal_then_ctrl_c_on_a_second_login_keeps_the_first_token(idp: LocalIdP, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "sandbox")
    out = tmp_path / "stdout"
    child = _spawn_tokensmith(cli, ["login", *_login_args(idp)], out)
    child.expect(rb"enter the code:")
    child.expect(CODE)
    user_code = child.match.group(1).decode()
    child.expect(rb"scan this QR code")
    child.expect("█".encode())
    idp.approve(user_code)
    child.expect(rb"Logged in \(")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    screen = _screen(child).replace(b"\x1b[4m", b"").replace(b"\x1b[0m", b"")
    assert f"    {idp.verification_uri}".encode() in screen and f"user_code={user_code}".encode() in screen
    assert out.read_text() == ""  # a login prints no token
    key = TokenClient(issuer=idp.issuer, client_id=DEVICE_PUBLIC.client_id, scope="openid offline_access").cache_key
    first = cli.token_file(key).read_bytes()

    second = _spawn_tokensmith(cli, ["login", *_login_args(idp)], out)
    second.expect(CODE)
    assert second.match.group(1).decode() != user_code
    second.expect(rb"left")  # waiting for approval, the status line running
    second.sendintr()
    second.expect(rb"interrupted")
    second.expect(pexpect.EOF)
    second.close()
    assert second.exitstatus == 130
    transcript = _screen(second)
    assert transcript.count(b"interrupted") == 1 and transcript.rstrip().endswith(b"tokensmith: interrupted")
    assert b"Traceback" not in transcript
    assert cli.token_file(key).read_bytes() == first  # byte for byte: the first login's token
    served = cli.run("token", *_login_args(idp), "--no-interactive")
    assert served.returncode == 0 and served.stdout == json.loads(first)["token"]["access_token"] + "\n"


def test_kubectl_not_interactive_never_prompts_even_on_a_terminal(idp: LocalIdP, tmp_path: Path) -> None:
    """On a terminal ``tokensmith token`` would start a login; ``spec.interactive: false`` from kubectl stops it."""
    cli = Cli(tmp_path / "sandbox")
    out = tmp_path / "stdout"
    args = ["token", *_login_args(idp), "--format", "exec-credential"]
    info = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "spec": {"interactive": False}}
    child = _spawn_tokensmith(cli, args, out, KUBERNETES_EXEC_INFO=json.dumps(info))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4
    screen = _screen(child)
    assert not CODE.search(screen) and b"enter the code" not in screen
    assert screen.count(b"\n") == 1 and b"`tokensmith login --issuer" in screen
    assert out.read_text() == ""

    control = _spawn_tokensmith(cli, args, out)  # the same command without kubectl's word: a login starts
    control.expect(rb"enter the code:")
    control.expect(CODE)
    control.sendintr()
    control.expect(pexpect.EOF)
    control.close()
    assert control.exitstatus == 130 and b"Traceback" not in _screen(control)
