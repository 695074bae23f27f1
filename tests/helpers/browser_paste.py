"""A person at a terminal without a browser (paste mode): the browser login shows the link, the person signs in
elsewhere and pastes back the address their browser landed on. The link goes to stderr; the pasted address is read
from the terminal with ``input()``; one JSON line on stdout says how it ended (never a token).

Usage: browser_paste.py AUTHORIZATION_ENDPOINT TOKEN_ENDPOINT CLIENT_ID SCOPE ISSUER
"""

from __future__ import annotations

import json
import sys

import tokensmith
from tokensmith.browser import BrowserPrompt, browser_login


def main() -> None:
    authorization_endpoint, token_endpoint, client_id, scope, issuer = sys.argv[1:6]

    def on_prompt(prompt: BrowserPrompt) -> None:
        print(f"Open this link in a browser and sign in:\n\n    {prompt.url}\n", file=sys.stderr)
        print("Your browser then shows an error page (nothing listens here); copy its address.", file=sys.stderr)

    try:
        token = browser_login(
            authorization_endpoint,
            token_endpoint,
            tokensmith.NoClientAuth(client_id),
            on_prompt=on_prompt,
            scope=scope,
            prompt="consent",
            issuer=issuer,
            iss_required=True,
            open_browser=None,
            paste=lambda: input("Paste the address here: "),
            login_timeout=60,
        )
    except tokensmith.TokensmithError as error:
        print(json.dumps({"error": type(error).__name__}), flush=True)
        return
    print(json.dumps({"ok": True, "scope": token.scope, "refresh_token": bool(token.refresh_token)}), flush=True)


if __name__ == "__main__":
    main()
