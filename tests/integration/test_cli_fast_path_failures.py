"""The cached-token fast path when something around it is wrong: stdout closed or full, a token file written by a
newer tokensmith. The fast path must never be worse than the full command line: no traceback, one line on stderr
that says what is wrong, the exit code the full command line gives. Real subprocesses, tokens planted with the
library's own ``FileStore`` for an issuer nothing listens on."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from cli_harness import TOKENSMITH, Cli, one_line, plant
from tokensmith import TokenClient

ACCESS_TOKEN = "cached-access-token.fast_path~2"
GIT_REQUEST = "protocol=https\nhost=git.example.test\n\n"


@pytest.fixture
def cached(cli: Cli, issuer: str) -> list[str]:
    """A valid token for a public client in the default store; the flags that name it."""
    plant(cli.tokens, TokenClient(issuer=issuer, client_id="fast-cli").cache_key, ACCESS_TOKEN)
    return ["--issuer", issuer, "--client-id", "fast-cli"]


def _shell(cli: Cli, redirect: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``tokensmith *args`` with stdout redirected by the shell (``>&-``, ``>/dev/full``)."""
    return subprocess.run(
        ["/bin/sh", "-c", f'exec "$@" {redirect}', "sh", str(TOKENSMITH), *args],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.environ(),
        timeout=60,
    )


@pytest.mark.parametrize("command", ["token", "git-credential"])
def test_a_closed_stdout_on_the_fast_path_is_one_line_not_a_traceback(
    command: str, cli: Cli, cached: list[str]
) -> None:
    args = [command, *cached, *(["get"] if command == "git-credential" else [])]
    proc = _shell(cli, ">&-", *args, input=GIT_REQUEST if command == "git-credential" else None)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == "tokensmith: cannot write the token to stdout (closed); nothing was printed"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["raw", "exec-credential"])
def test_a_full_disk_on_the_fast_path_is_one_line_not_a_traceback(fmt: str, cli: Cli, cached: list[str]) -> None:
    proc = _shell(cli, ">/dev/full", "token", *cached, "--format", fmt)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        "tokensmith: cannot write the token to stdout (No space left on device); nothing was printed"
    )


def test_a_token_file_of_a_newer_format_is_left_alone_not_a_traceback(cli: Cli, cached: list[str]) -> None:
    """A cache shared with a newer tokensmith (an upgrade rolled back, two versions on one machine): the full
    command line ignores that file with a warning and says what to do; the fast path must not crash on it."""
    (path,) = cli.token_files()
    document = json.loads(path.read_text())
    document["version"] = 2
    path.write_text(json.dumps(document))
    newer = path.read_text()

    proc = cli.run("token", *cached, "--no-interactive")

    assert "Traceback" not in proc.stderr
    assert proc.returncode == 4, proc.stderr  # login required: this tokensmith cannot use that token
    *warnings, last = proc.stderr.splitlines()
    assert warnings and all("newer than this tokensmith understands" in line for line in warnings), proc.stderr
    assert last.startswith("tokensmith: login required for ")
    assert proc.stdout == ""
    assert path.read_text() == newer  # left as the newer tokensmith wrote it
