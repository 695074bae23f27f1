"""Issue 11 part 5: the README's "Secretless client authentication and token exchange" section. Its first snippet
runs as written against the bundled IdP (only the port substituted); the others are illustrations (a PEM file, a
KMS), so they are compiled and checked to use public names only."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tokensmith
from idp_harness import LocalIdP

ROOT = Path(__file__).resolve().parents[2]
TITLE = "## Secretless client authentication and token exchange"


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(TITLE)
    end = text.index("\n## ", start + len(TITLE))
    return text[start:end].strip()


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _section(), flags=re.S)


def test_snippets_use_public_names_only() -> None:
    blocks = _blocks()
    assert len(blocks) == 2
    for code in blocks:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tokensmith":
                assert node.attr in tokensmith.__all__, node.attr
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(name.startswith("tokensmith.") for name in names), names


@pytest.mark.idp
def test_the_first_snippet_runs_as_written(idp: LocalIdP) -> None:
    code = _blocks()[0].replace("http://127.0.0.1:9400", idp.issuer)
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "urn:ietf:params:oauth:token-type:access_token"
