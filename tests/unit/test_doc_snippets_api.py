"""Every Python snippet in README.md and docs/dpop.md uses tokensmith's public API as it is (see
``tests/doc_snippets.py``): public modules only, names that exist, calls that bind to the real signatures. The
snippets that can run are run against the bundled IdP by ``tests/integration/test_doc_snippets_run.py``."""

from __future__ import annotations

import pytest

from doc_snippets import ApiMismatch, Snippet, all_snippets, check


@pytest.mark.parametrize("snippet", all_snippets(), ids=lambda s: s.key)
def test_snippet_uses_the_public_api_as_it_is(snippet: Snippet) -> None:
    check(snippet.code, f"{snippet.doc}:{snippet.line}")


def test_there_are_snippets_to_check() -> None:
    assert len(all_snippets()) >= 13


@pytest.mark.parametrize(
    "code",
    [
        "import tokensmith\ntokensmith.NoSuchClient('x')",
        "import tokensmith\ntokensmith.TokenClient.from_issuer('https://i', 'c', scopes='a')",
        "import tokensmith\nc = tokensmith.TokenClient.from_issuer('https://i', 'c')\nc.get_token(fresh=True)",
        "import tokensmith\nc = tokensmith.TokenClient.from_issuer('https://i', 'c')\nc.get_tokens()",
        "import tokensmith\nasync def f():\n"
        "    async with tokensmith.AsyncTokenClient.from_issuer('https://i', 'c') as c:\n"
        "        await c.get_token(stale=None, force=True)",
        "from tokensmith import NoSuchName",
        "from tokensmith._engine import Engine",
        "import tokensmith._transport",
        "from tokensmith import token_client\ntoken_client.get_token('https://i/token', authorization_headers='x')",
        "import tokensmith\ntokensmith.DPoPKey.from_pem(b'', passphrase=b'')",
        "from tokensmith.integrations.requests_auth import TokenAuth\nTokenAuth()",
    ],
)
def test_the_check_refuses_what_does_not_exist(code: str) -> None:
    with pytest.raises(ApiMismatch):
        check(code)
