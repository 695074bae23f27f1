"""``import tokensmith`` must not import requests, keyring, httpx or segno (DESIGN: import light): the CLI's
cached-token path runs on every kubectl/git call."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_import_tokensmith_is_light() -> None:
    loaded = _modules_after("import tokensmith, tokensmith.exceptions, tokensmith.token, tokensmith.stores")
    assert "tokensmith" in loaded
    heavy = {"requests", "urllib3", "keyring", "httpx", "segno", "click", "filelock"}
    assert not heavy & loaded, heavy & loaded


def test_lazy_attributes_resolve() -> None:
    loaded = _modules_after("import tokensmith; tokensmith.TokenClient")
    assert "requests" in loaded and "tokensmith.client" in loaded
