"""IdP token requests per 1000 API calls over a token's lifetime (target: 1 per lifetime).

Some IdPs bill every client-credentials token (Auth0 M2M), so a client that fetches a token per API call, or
after every 401, costs money. This benchmark starts the local IdP (node oidc-provider, tests/idp) with a short
access-token lifetime, a tiny resource server on loopback (the fault server from the test tree), and makes API
calls with ``requests`` + ``tokensmith.integrations.requests_auth.TokenAuth(TokenClient(...))`` spread evenly
over a span of the token lifetime, counting token-endpoint requests with a counting session. It reports
them side by side with the seed module's pattern (one ``get_token`` per API call: 1000 per 1000).

Usage: python benchmarks/bench_token_lifecycle.py [--calls 1000] [--ttl 20] [--lifetimes 1]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tokensmith
from counting_session import CountingSession
from fault_server import FaultServer, Reply
from idp_harness import CC_CLIENT, LocalIdP
from tokensmith import TokenClient
from tokensmith.integrations.requests_auth import TokenAuth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--ttl", type=int, default=20, help="access-token lifetime at the IdP, seconds")
    parser.add_argument(
        "--lifetimes", type=float, default=1.0, help="how many token lifetimes the calls are spread over (default: one)"
    )
    args = parser.parse_args()
    logging.getLogger("tokensmith").setLevel(logging.ERROR)

    with LocalIdP(access_ttl=args.ttl) as idp, FaultServer() as api:
        api.default("/things", Reply(json={"ok": True}))
        session = CountingSession()
        client = TokenClient(idp.token_endpoint, CC_CLIENT.client_id, CC_CLIENT.client_secret, session=session)
        auth = TokenAuth(client)
        http = requests.Session()
        # A token is renewed (in the background) from its refresh point: a quarter of its lifetime before expiry
        # (at most 300 s; half-life for tokens of 2 h or more), made up to 10 % earlier by jitter.
        policy = tokensmith.RenewalPolicy()
        if args.ttl >= policy.long_lived:
            period = args.ttl / 2
        else:
            period = args.ttl - min(policy.advisory, policy.advisory_fraction * args.ttl)
        earliest = period * (1 - policy.jitter)
        # One lifetime: spread the calls over the time before the earliest refresh point: one token must serve all.
        span = (earliest if args.lifetimes == 1 else args.ttl * args.lifetimes) - 0.5
        started = time.monotonic()
        for i in range(args.calls):
            target = started + span * i / args.calls
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            response = http.get(api.url("/things"), auth=auth, timeout=10)
            response.raise_for_status()
        elapsed = time.monotonic() - started
        expected = max(1, math.ceil(elapsed / earliest))
        print(f"{args.calls} API calls over {elapsed:.1f} s with a {args.ttl} s token ({args.lifetimes:g} lifetime(s))")
        print(f"{'client':<44}{'IdP token requests':>20}{'per 1000 calls':>16}")
        print(
            f"{'tokensmith TokenClient + requests TokenAuth':<44}{session.count():>20}"
            f"{session.count() * 1000 / args.calls:>16.1f}"
        )
        print(f"{'seed pattern (get_token per API call)':<44}{args.calls:>20}{1000:>16.1f}")
        print(f"resource server saw {api.count('/things')} calls; client stats: {client.stats}")
        verdict = "PASS" if session.count() <= expected else "FAIL"
        print(
            f"[{verdict}] IdP requests = {session.count()} "
            f"(target: at most {expected}, one per renewal period of {earliest:g}-{period:g} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
