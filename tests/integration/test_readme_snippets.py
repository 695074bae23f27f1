"""Issue 7 item 20: the README's quickstart snippets run as written against the bundled IdP (``make idp`` serves
it on port 9400; here it runs on a free port, the only thing substituted). Each snippet runs in its own
interpreter; the device login is approved on the IdP's pages, as a person would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from idp_harness import LocalIdP

README = Path(__file__).resolve().parents[2] / "README.md"


def _quickstart_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("## Quickstart") : text.index("## Errors")]
    return re.findall(r"```(python|sh)\n(.*?)```", section, flags=re.S)


def _run(idp: LocalIdP, language: str, code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = code.replace("http://127.0.0.1:9400", idp.issuer)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "NO_COLOR": "1"}
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    command = [sys.executable, "-c", code] if language == "python" else ["/bin/sh", "-c", code]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    stderr_lines: list[str] = []
    # The watcher alone reads stderr: communicate() would read the same pipe too and could take the code's lines.
    stderr, proc.stderr = proc.stderr, None
    assert stderr is not None

    def watch() -> None:  # approve the device login shown on stderr, as the person would
        code_next = False
        for line in stderr:
            stderr_lines.append(line)
            if code_next and line.strip():
                idp.approve(line.strip())
                code_next = False
            if "enter the code" in line:
                code_next = True

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()  # not communicate(): the watcher thread owns stderr
    proc.wait(timeout=90)
    watcher.join(10)
    stderr.close()
    return subprocess.CompletedProcess(command, proc.returncode, stdout, "".join(stderr_lines))


def test_the_quickstart_has_the_four_snippets() -> None:
    assert [lang for lang, _ in _quickstart_blocks()] == ["python", "python", "python", "sh"]


@pytest.mark.parametrize("index", range(4))
def test_quickstart_snippet_runs_as_written(idp: LocalIdP, tmp_path: Path, index: int) -> None:
    language, code = _quickstart_blocks()[index]
    result = _run(idp, language, code, tmp_path)
    assert result.returncode == 0, result.stderr
    if index == 0:
        assert "Token(access_token='***" in result.stdout
    elif index == 1:
        assert "'sub': 'alice'" in result.stdout
        again = _run(idp, language, code, tmp_path)  # "Run it twice": the file store answers, no login
        assert again.returncode == 0 and "enter the code" not in again.stderr
    elif index == 2:
        assert result.stdout.strip() == "3600"
    else:  # login (device flow, approved), then token from the store
        token = result.stdout.strip()
        assert token and "\n" not in token and "enter the code" in result.stderr and "Logged in" in result.stderr
