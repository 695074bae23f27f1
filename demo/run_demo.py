"""End-to-end demo against the bundled local IdP (node oidc-provider in tests/idp).

    make demo                            # you approve the device login in a browser
    make demo DEMO_ARGS=--auto-approve   # non-interactive smoke run: the script approves it itself

It starts the IdP on a free loopback port, fetches a client-credentials token, runs a device login (prints
the link and the code, waits for approval), then refreshes the token (the IdP rotates refresh tokens).
Tokens are never printed: only their length and lifetime.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from idp_harness import CC_CLIENT, DEVICE_PUBLIC, LocalIdP
from tokensmith import token_client as tc
from tokensmith._protocol.client_auth import basic_authorization
from tokensmith.device import PollProgress
from tokensmith.exceptions import TokensmithError


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--auto-approve", action="store_true",
                        help="approve the device login automatically (drives the IdP's pages over HTTP)")
    args = parser.parse_args(argv)

    say("Starting the local IdP (node oidc-provider) ...")
    with LocalIdP() as idp:
        say(f"  issuer: {idp.issuer}")

        # 1. Client credentials (RFC 6749 §4.4) with HTTP Basic, id and secret form-encoded (§2.3.1).
        assert CC_CLIENT.client_secret is not None
        header = basic_authorization(CC_CLIENT.client_id, CC_CLIENT.client_secret, "rfc6749")
        access, _, expires_in = tc.get_token(idp.token_endpoint, authorization_header=header)
        say(f"\n[1/3] client credentials: got a Bearer token ({len(access)} chars), expires in {expires_in} s")

        # 2. Device login (RFC 8628).
        code = tc.get_device_code(idp.device_authorization_endpoint, DEVICE_PUBLIC.client_id,
                                  scope=["openid", "offline_access"])
        say("\n[2/3] device login")
        say(f"  Open:       {code.verification_uri}")
        say(f"  Enter code: {code.user_code}")
        if code.verification_uri_complete:
            say(f"  (or open {code.verification_uri_complete} and confirm the code shown matches)")
        say(f"  The code expires in {code.expires_in // 60} min. Sign in with any username and password.")
        if args.auto_approve:
            say("  --auto-approve: approving on the IdP's pages as user 'alice' ...")
            threading.Thread(target=idp.approve, args=(code.user_code,), daemon=True).start()

        def progress(p: PollProgress) -> None:
            say(f"  waiting for approval ... ({p.outcome.value}, next check in {p.next_poll_in:.0f} s, "
                f"{p.time_left:.0f} s left)")

        access, refresh, expires_in = tc.poll_token_endpoint(code, idp.token_endpoint, DEVICE_PUBLIC.client_id,
                                                             on_progress=progress)
        say(f"  approved: access token ({len(access)} chars, {expires_in} s), refresh token: {bool(refresh)}")

        # 3. Refresh (RFC 6749 §6); the IdP rotates the refresh token.
        assert refresh is not None
        access2, refresh2, expires_in2 = tc.get_token(idp.token_endpoint, client_id=DEVICE_PUBLIC.client_id,
                                                      grant_type=tc.GrantType.REFRESH_TOKEN, refresh_token=refresh)
        say(f"\n[3/3] refresh: new access token ({len(access2)} chars, {expires_in2} s); "
            f"refresh token rotated: {refresh2 is not None and refresh2 != refresh}")
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
