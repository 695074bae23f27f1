"""The Python snippets of README.md and docs/dpop.md run against the bundled IdP and the test resource server
(``tests/resource_server.py``), with only the placeholder hosts and credentials substituted: the issuer
``https://idp.example.com`` (and ``make idp``'s port 9400) is the test IdP, ``https://api.example.com`` the
resource server, ``my-service`` with ``client-secret`` (or ``secret``, or ``$CLIENT_SECRET``) the IdP's
client-credentials client. Each runs in its own interpreter; a device login is approved on the IdP's pages.

Every snippet is listed below, so a new one must be either run here or named as one that cannot run as is (all of
them are also checked against the public API by ``tests/unit/test_doc_snippets_api.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from doc_snippets import Snippet, all_snippets
from idp_harness import CC_CLIENT, LocalIdP
from resource_server import ResourceServer, resource_server

__all__ = ["resource_server"]

pytestmark = pytest.mark.idp

RUN_HERE = {
    "README.md § `TokenClient`: one call that always returns a usable token #0",
    "README.md § Renewal: no caller waits, outages, and an async client #0",
    "README.md § DPoP and resource discovery #0",
    "README.md § Device login, for people at a terminal #0",
    "README.md § Running flytekit on tokensmith #0",
    "docs/dpop.md § DPoP: tokens bound to a key (RFC 9449) #0",
    "docs/dpop.md § Resource discovery (RFC 9728, RFC 8707) #0",
}
RUN_ELSEWHERE = {  # as written: test_readme_snippets.py and test_secretless_readme.py
    "README.md § Quickstart (against the bundled IdP) #0",
    "README.md § Quickstart (against the bundled IdP) #1",
    "README.md § Quickstart (against the bundled IdP) #2",
    "README.md § Secretless client authentication and token exchange #0",
}
NOT_RUNNABLE = {
    "README.md § Secretless client authentication and token exchange #1": "a PEM and a KMS signer, elided",
    "README.md § Browser login: authorization code + PKCE on a loopback redirect #0": "a person's browser",
}
SNIPPETS = {s.key: s for s in all_snippets()}


def test_every_snippet_is_run_or_named_as_not_runnable() -> None:
    assert set(SNIPPETS) == RUN_HERE | RUN_ELSEWHERE | set(NOT_RUNNABLE)


def _substituted(code: str, idp: LocalIdP, rs: ResourceServer) -> str:
    assert CC_CLIENT.client_secret is not None
    for placeholder, value in (
        ("http://127.0.0.1:9400", idp.issuer),
        ("https://idp.example.com", idp.issuer),
        ('"https://api.example.com/"', repr(rs.resource)),  # the resource identifier itself
        ("https://api.example.com", rs.resource),  # URLs under it
        ('"my-service"', repr(CC_CLIENT.client_id)),
        ('"client-secret"', repr(CC_CLIENT.client_secret)),
        ('"secret"', repr(CC_CLIENT.client_secret)),
    ):
        code = code.replace(placeholder, value)
    if "async def main()" in code and "asyncio.run(main())" not in code:
        code += "\nimport asyncio\nasyncio.run(main())\n"
    return code


@pytest.mark.parametrize("key", sorted(RUN_HERE))
def test_snippet_runs(key: str, idp: LocalIdP, resource_server: ResourceServer, tmp_path: Path) -> None:
    snippet: Snippet = SNIPPETS[key]
    code = _substituted(snippet.code, idp, resource_server)
    assert CC_CLIENT.client_secret is not None
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "NO_COLOR": "1",
        "CLIENT_SECRET": CC_CLIENT.client_secret,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    stderr, proc.stderr = proc.stderr, None
    assert stderr is not None and proc.stdout is not None
    lines: list[str] = []

    def watch() -> None:  # approve a device login shown on stderr, as the person would
        code_next = False
        for line in stderr:
            lines.append(line)
            if code_next and line.strip():
                idp.approve(line.strip())
                code_next = False
            code_next = code_next or "enter the code" in line

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout = proc.stdout.read()
    proc.wait(timeout=90)
    watcher.join(10)
    stderr.close()
    assert proc.returncode == 0, f"{key} (line {snippet.line}):\n{''.join(lines)[-3000:]}"
    assert "Traceback" not in "".join(lines)
    del stdout
