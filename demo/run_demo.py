"""End-to-end demo against the bundled local IdP (node oidc-provider in tests/idp).

    make demo                            # you approve the device login in a browser
    make demo DEMO_ARGS=--auto-approve   # non-interactive smoke run: the script approves it itself

It starts the IdP on a free loopback port, fetches a client-credentials token with the drop-in
``token_client`` module, runs a device login with ``TokenClient`` and the terminal presenter (the link, the
code and a QR code on a terminal; waits for approval), then refreshes the token (the IdP rotates refresh tokens).
Tokens are never printed: only their length and lifetime.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from idp_harness import CC_CLIENT, DEVICE_PUBLIC, LocalIdP
from tokensmith import DevicePrompt, TokenClient, TokensmithError, basic_authorization
from tokensmith import token_client as tc
from tokensmith.cli.presenter import TerminalPresenter


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve the device login automatically (drives the IdP's pages over HTTP)",
    )
    args = parser.parse_args(argv)

    say("Starting the local IdP (node oidc-provider) ...")
    with LocalIdP() as idp:
        say(f"  issuer: {idp.issuer}")

        # 1. Client credentials (RFC 6749 §4.4) with HTTP Basic, id and secret form-encoded (§2.3.1).
        assert CC_CLIENT.client_secret is not None
        header = basic_authorization(CC_CLIENT.client_id, CC_CLIENT.client_secret, "rfc6749")
        access, _, expires_in = tc.get_token(idp.token_endpoint, authorization_header=header)
        say(f"\n[1/3] client credentials: got a Bearer token ({len(access)} chars), expires in {expires_in} s")

        # 2. Device login (RFC 8628) with TokenClient and the terminal presenter: link, code, QR, live status.
        client = TokenClient.from_issuer(idp.issuer, DEVICE_PUBLIC.client_id, scope="openid offline_access")
        say("\n[2/3] device login (TokenClient.login with TerminalPresenter)")
        approve = (
            (lambda p: threading.Thread(target=idp.approve, args=(p.user_code,), daemon=True).start())
            if args.auto_approve
            else (lambda p: None)
        )
        with TerminalPresenter(sys.stderr, open_browser=False) as presenter:

            def on_prompt(prompt: DevicePrompt) -> None:
                presenter.show_prompt(prompt)
                say(
                    "  Sign in with any username and password."
                    if not args.auto_approve
                    else "  --auto-approve: approving on the IdP's pages as user 'alice' ..."
                )
                approve(prompt)

            token = client.login(on_prompt=on_prompt, on_progress=presenter.on_progress)
        say(f"  {token!r}")

        # 3. Refresh (RFC 6749 §6): pretend the API rejected the token; the IdP rotates the refresh token.
        renewed = client.get_token(stale=token)
        say(
            f"\n[3/3] refresh: new access token ({len(renewed.access_token)} chars); refresh token rotated: "
            f"{renewed.refresh_token != token.refresh_token}; token requests so far: {client.stats.token_requests}"
        )
    say("\nDone.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TokensmithError as error:
        say(f"error: {type(error).__name__}: {error}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
